#!/usr/bin/env bash
# Prints the path of a Python interpreter of the given version (e.g. 3.12), or nothing.
# Looks on PATH, then in pyenv's versions (whose shims refuse a version that is not selected).
set -uo pipefail
version="${1:?usage: find-python.sh 3.12}"
works() { [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; }
candidates=()
found="$(command -v "python$version" 2>/dev/null)" && candidates+=("$found")
root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
for dir in "$root"/versions/"$version".* "$root"/versions/"$version"; do
  candidates+=("$dir/bin/python$version")
done
candidates+=("/usr/local/bin/python$version" "/usr/bin/python$version")
for candidate in "${candidates[@]}"; do
  if works "$candidate"; then
    # A pyenv shim runs the real interpreter: print that one.
    "$candidate" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
exit 1
