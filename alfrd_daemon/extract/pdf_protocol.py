"""The exit codes by which the PDF child (`pdf_worker`) tells its parent (`pdf`) how it ended.

Its own module, free of imports, so that neither side loads the other's dependencies: the
daemon never imports pypdf, and the child, started once per PDF, loads nothing it does not use.
"""

EXIT_OK = 0  # the reply holds the text
EXIT_BAD_PDF = 2  # the reply holds {"error": reason}: the content cannot be read
EXIT_NO_MEMORY = 3  # the reply holds {"error": ...}: RLIMIT_AS was reached
EXIT_USAGE = 64  # wrong arguments; no reply
