# Runs in the staged tree before `current` switches (cwd = the new version's folder).
# A non-zero exit stops the install; the running version stays.
test -x bin/hello
echo "preinstall: $SHOAL_PACKAGE $SHOAL_VERSION (was ${SHOAL_PREVIOUS_VERSION:-none})"
