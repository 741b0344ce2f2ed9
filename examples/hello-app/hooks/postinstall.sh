# Runs after `current` points at the new version. A non-zero exit switches back.
"$SHOAL_INSTALL_DIR/bin/hello"
