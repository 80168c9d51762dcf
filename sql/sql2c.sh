#!/bin/sh
# Turn the migrations sql/NNN-*.sql into a C array, in order, so that the
# daemon carries its schema and applies it through PRAGMA user_version.
set -eu
echo "/* Generated from the sql/NNN-name.sql migrations by sql/sql2c.sh. */"
echo "const char *const sql_migrations[] = {"
for f in "$@"; do
	printf '\t/* %s */\n' "$f"
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$/\\n"/' "$f"
	printf '\t,\n'
done
echo "};"
echo "const int sql_migrations_count = $#;"
