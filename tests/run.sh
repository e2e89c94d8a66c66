#!/bin/sh
# prove's runner: Lua tests through the launcher (BLT_BIN picks another build, e.g.
# the sanitizer one), anything else as an executable.
case "$1" in
*.lua) exec "${BLT_BIN:-./blt}" "$1" ;;
*) exec "$1" ;;
esac
