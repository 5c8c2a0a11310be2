# Shared by scripts/setup_*_venv.sh (sourced, not run): find the interpreter a framework's venv is
# built from, and tell whether a venv already holds what its suite needs (so CI reuses it).

# find_python X.Y OVERRIDE [FALLBACK...]: print the path of a Python X.Y: OVERRIDE (a
# MEMGUARD_PY3xx variable's value, may be empty), else pythonX.Y, else python3, else a FALLBACK.
find_python() {
    local want="$1" override="$2" candidate
    shift 2
    for candidate in "$override" "python$want" python3 "$@"; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" \
                2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "no Python $want found: set MEMGUARD_PY${want/./}=/path/to/python$want" >&2
    return 1
}

# venv_has PY DIST VERSION "MODULE..." ["ABSENT..."]: whether the venv's python PY has DIST at
# exactly VERSION, can import every MODULE, and has none of ABSENT (default: torch, which these
# venvs never need: their suites score with stub scorers).
venv_has() {
    local py="$1" dist="$2" version="$3" modules="$4" absent="${5-torch}"
    [ -x "$py" ] && "$py" - "$dist" "$version" "$modules" "$absent" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util, sys
dist, version, modules, absent = sys.argv[1:5]
ok = md.version(dist) == version and all(importlib.util.find_spec(name) for name in modules.split())
sys.exit(0 if ok and not any(importlib.util.find_spec(name) for name in absent.split()) else 1)
PY
}
