#!/bin/sh
# Install bkm-bridge @VERSION@ from this bundle only: no index, no network.
#   sh install.sh [VENV]     (default /opt/bkm-bridge/venv; run it again to upgrade)
# Uses python3 from PATH, or the one in $PYTHON. Bundle built for @TARGET@ (Python @PYTHONS@).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/opt/bkm-bridge/venv}
python=${PYTHON:-python3}

have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case " @PYTHONS@ " in
    *" $have "*) ;;
    *) echo "This bundle is for Python @PYTHONS@; $python is $have. Set PYTHON=/path/to/python@PYTHONS@." >&2
       exit 2 ;;
esac

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-index \
    --find-links "$here/wheels" --upgrade "bkm-bridge==@VERSION@"

echo
echo "bkm-bridge @VERSION@ is installed in $venv."
echo "Next step: $venv/bin/bkm-bridge config check --config /etc/bkm-bridge/bkm-bridge.toml"
echo "(service/README.md, section 3, shows the settings file and the systemd unit.)"
