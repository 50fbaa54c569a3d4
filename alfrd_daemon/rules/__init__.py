"""Rules: named conditions on a document's text, name and inbox folder, and the tags, type,
correspondent and title they give it. Pure logic: the caller reads the YAML and the rows."""
