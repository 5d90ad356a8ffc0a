# The Python environment of the project's commands. Sourced (not run) by
# scripts/serve.sh, scripts/test.sh, scripts/lint.sh and .ci/run:
#
#   . scripts/env.sh
#   wspractice_env                      # choose it and put it first on PATH
#   wspractice_install [GROUP...]       # wspractice (editable) and groups
#
# Which environment:
#
#   * the virtual environment that python3 runs in, if it runs in one (an
#     activated venv, or a venv's bin/ first on PATH): used as it is, never
#     nested in another;
#   * otherwise .venv/ in the checkout, made with python3 ($PYTHON, if set)
#     the first time and reused after.
#
# So a system Python is never installed into: Debian's and Ubuntu's refuse
# it (PEP 668, "externally managed"), and others are better left alone.
# After wspractice_env, `python` and `python3` are that environment's.

wspractice_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Dependency groups (PEP 735, in pyproject.toml) need pip 25.1 or newer.
wspractice_min_pip="25.1"

wspractice_say() { printf '\n==> %s\n' "$*" >&2; }
wspractice_die() {
    printf 'error: %s\n' "$*" >&2
    return 1
}

wspractice_env() {
    local python="${PYTHON:-python3}" venv
    if ! command -v "$python" >/dev/null 2>&1; then
        wspractice_die "no $python on PATH: install Python 3.10 or newer" \
            "(Debian, Ubuntu: sudo apt install python3 python3-venv)"
        return 1
    fi
    python="$(command -v "$python")"
    if "$python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
        venv="$("$python" -c 'import sys; print(sys.prefix)')"
    else
        venv="$wspractice_root/.venv"
        if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
            wspractice_check_version "$python" || return 1
            wspractice_make_venv "$python" "$venv" || return 1
        fi
    fi
    export VIRTUAL_ENV="$venv"
    export PATH="$venv/bin:$PATH"
    unset PYTHONHOME
    hash -r
    wspractice_check_version python ||
        wspractice_die "(in $venv; remove it, or use another, to change Python)" ||
        return 1
}

wspractice_check_version() {
    if ! "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        wspractice_die "wspractice needs Python 3.10 or newer;" \
            "$1 is $("$1" -c 'import platform; print(platform.python_version())')." \
            "Run with PYTHON=python3.12 (say), or in a venv of a newer Python"
        return 1
    fi
}

wspractice_make_venv() {
    local python="$1" venv="$2" version
    wspractice_say "A virtual environment for wspractice: $venv ($("$python" --version))"
    if "$python" -c 'import ensurepip' >/dev/null 2>&1; then
        "$python" -m venv --clear "$venv"
        return
    fi
    # No ensurepip: Debian and Ubuntu leave it to the python3-venv package.
    # A pip beside python3 can put one into the venv instead (pip >= 22.3).
    if "$python" -m pip --python "$python" --version >/dev/null 2>&1; then
        "$python" -m venv --clear --without-pip "$venv"
        "$python" -m pip --python "$venv/bin/python" install --quiet pip
        return
    fi
    version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if command -v apt-get >/dev/null 2>&1 &&
        [ "$(readlink -f "$(command -v "$python")")" = "/usr/bin/python$version" ]; then
        wspractice_say "$python cannot make a virtual environment with pip:" \
            "installing Debian's python$version-venv (apt-get)"
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "python$version-venv" >/dev/null
        "$python" -m venv --clear "$venv"
        return
    fi
    wspractice_die "$python has neither ensurepip nor pip, so it cannot make a" \
        "virtual environment with pip in it; install them (Debian, Ubuntu:" \
        "sudo apt install python3-venv) or activate a venv of your own, then run again"
}

# Install wspractice (editable) and the named dependency groups into the
# environment chosen by wspractice_env, unless that was already done for
# the same checkout, packaging files and groups (so a second run needs no
# network and starts at once).
wspractice_install() {
    local stamp key
    stamp="$VIRTUAL_ENV/.wspractice-installed"
    key="$(wspractice_install_key "$@")"
    if [ -f "$stamp" ] && grep -qxF "$key" "$stamp" && wspractice_is_installed; then
        return
    fi
    wspractice_say "Python packages into $VIRTUAL_ENV: wspractice (editable)${*:+, groups: $*}"
    wspractice_ensure_pip "$#"
    local groups=() group
    for group in "$@"; do groups+=(--group "$group"); done
    (cd "$wspractice_root" &&
        python -m pip install --quiet --disable-pip-version-check -e . "${groups[@]}")
    echo "$key" >>"$stamp"
}

wspractice_install_key() {
    python - "$wspractice_root" "$@" <<'EOF'
import hashlib, sys
from pathlib import Path

root = Path(sys.argv[1])
digest = hashlib.sha256(str(root).encode())
for name in ("setup.cfg", "pyproject.toml", "setup.py"):
    path = root / name
    digest.update(path.read_bytes() if path.exists() else b"")
print(digest.hexdigest()[:20], *sorted(sys.argv[2:]))
EOF
}

wspractice_is_installed() {
    python -I - "$wspractice_root" <<'EOF' >/dev/null 2>&1
import sys
from pathlib import Path

import wspractice  # noqa: F401
import wsproto  # noqa: F401

root = Path(sys.argv[1]).resolve()
sys.exit(not Path(wspractice.__file__).resolve().is_relative_to(root))
EOF
}

# A pip in the environment, and one that knows --group if $1 (the number of
# groups wanted) is not 0.
wspractice_ensure_pip() {
    if ! python -m pip --version >/dev/null 2>&1; then
        python -m ensurepip --upgrade >/dev/null
    fi
    if [ "$1" -ne 0 ] && ! python - "$wspractice_min_pip" <<'EOF'; then
import sys
from importlib.metadata import version

def parts(text):
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())

sys.exit(parts(version("pip")) < parts(sys.argv[1]))
EOF
        wspractice_say "pip $wspractice_min_pip or newer, for dependency groups (pip install --upgrade pip)"
        python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=$wspractice_min_pip"
    fi
}
