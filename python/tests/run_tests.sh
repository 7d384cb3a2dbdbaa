#!/bin/sh
# CTest's test_python: pytest over this folder with the given interpreter. Skipped (exit 77,
# CTest's SKIP_RETURN_CODE) with one line naming the package when pytest or numpy is missing.
py="$1"
dir="$2"
for m in pytest:python3-pytest numpy:python3-numpy; do
    if ! "$py" -c "import ${m%%:*}" 2>/dev/null; then
        echo "test_python skipped: ${m%%:*} is missing for $py (apt-get install ${m#*:})"
        exit 77
    fi
done
# An assertion that fails in a test's thread is an error, not a warning.
exec "$py" -m pytest -q -rs -p no:cacheprovider \
  -W error::pytest.PytestUnhandledThreadExceptionWarning "$dir"
