#!/usr/bin/env bash
# `make gui-check`: the real QGIS under Xvfb with the plugin installed from dist/kdmsi_qgis.zip.
#
# A throwaway QGIS profile gets the plugin unzipped into its python/plugins folder and enabled;
# QGIS starts with tests/gui/gui_check.py, which opens the KD-MSI panel over OSCD Mumbai (or,
# without ../shared/data, a synthetic scene made by core.data.synthetic), creates the grid, tags tiles
# with mouse clicks, trains (Cancel in epoch 2, then Resume), suggests tiles, detects,
# and takes screenshots into docs/screenshots.
# Screenshots over 300 KB are reduced with ImageMagick. Exit status 0 only when every step passed.
#
# Variables: PY (worker Python, default .venv/bin/python), DATA (default ../shared/data),
# SHOTS (default docs/screenshots), GUI_TIMEOUT (s, default 900), GUI_BACKBONE, GUI_EPOCHS,
# KEEP=1 (keep the profile, outputs and logs in the temporary folder), INSTALL=1 (first run
# Raster > KD-MSI > Install dependencies and walk with the worker it builds in the fresh profile:
# no KDMSI_PYTHON, no checkout .venv beside the plugin).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
ZIP=$ROOT/dist/kdmsi_qgis.zip
DATA=${DATA:-$ROOT/../shared/data}
SHOTS=${SHOTS:-$ROOT/docs/screenshots}
GUI_TIMEOUT=${GUI_TIMEOUT:-900}
MAX_BYTES=300000
IMAGEMAGICK=/usr/bin   # the `convert` first on PATH may not be ImageMagick's

for tool in qgis xvfb-run "$IMAGEMAGICK/import" "$IMAGEMAGICK/convert"; do
    command -v "$tool" >/dev/null || { echo "gui-check: $tool is missing (make setup installs it)"; exit 2; }
done
[ -f "$ZIP" ] || { echo "gui-check: $ZIP is missing; run make zip"; exit 2; }
[ -x "$PY" ] || { echo "gui-check: no worker Python at $PY; run make setup"; exit 2; }

# Not under /tmp: QGIS treats layers from the temporary folder as "temporary layers" and asks
# about them on exit, and a user's outputs live in a folder of their own.
mkdir -p "$ROOT/build"
WORK=$(mktemp -d "$ROOT/build/gui-check.XXXXXX")
PROFILE=$WORK/profiles/default
mkdir -p "$PROFILE/python/plugins" "$PROFILE/QGIS" "$SHOTS"
(cd "$PROFILE/python/plugins" && "$PY" -m zipfile -e "$ZIP" .)
cat > "$PROFILE/QGIS/QGIS3.ini" <<INI
[PythonPlugins]
kdmsi_qgis=true

[qgis]
checkVersion=false
INI

MUMBAI=$DATA/geo_oscd_mumbai
if compgen -G "$MUMBAI/A/*.tif" >/dev/null; then
    BEFORE=$(ls "$MUMBAI"/A/*.tif | head -1)
    AFTER=$(ls "$MUMBAI"/B/*.tif | head -1)
    LABEL=$(ls "$MUMBAI"/label/*.tif 2>/dev/null | head -1 || true)
    BANDS=3,2,1
else
    echo "gui-check: $MUMBAI not found; using a synthetic scene (core.data.synthetic.make_scene)."
    (cd "$ROOT" && "$PY" -c "import sys; from pathlib import Path; from core.data.synthetic import make_scene; make_scene(Path(sys.argv[1]), size=640)" "$WORK/scene")
    BEFORE=$WORK/scene/before.tif AFTER=$WORK/scene/after.tif LABEL=$WORK/scene/change.tif
    BANDS=1,2,3
fi
# a plain walk leaves the first-run screenshot of an INSTALL=1 walk alone
rm -f "$SHOTS"/[1-9]_*.png
[ -z "${INSTALL:-}" ] || rm -f "$SHOTS"/0_*.png

echo "gui-check: QGIS with the plugin from $ZIP, profile and outputs in $WORK"
status=0
if [ -n "${INSTALL:-}" ]; then
    WORKER=(env -u KDMSI_PYTHON KDMSI_GUI_INSTALL=1)
else
    WORKER=(env KDMSI_PYTHON="$PY")
fi
"${WORKER[@]}" PYTHONPATH="$ROOT/tests/gui${PYTHONPATH:+:$PYTHONPATH}" \
KDMSI_GUI_BEFORE=$BEFORE KDMSI_GUI_AFTER=$AFTER KDMSI_GUI_LABEL=$LABEL KDMSI_GUI_BANDS=$BANDS \
KDMSI_GUI_WORK=$WORK KDMSI_GUI_SHOTS=$SHOTS KDMSI_GUI_TIMEOUT=$GUI_TIMEOUT \
KDMSI_GUI_BACKBONE=${GUI_BACKBONE:-efficientnet-lite0} KDMSI_GUI_EPOCHS=${GUI_EPOCHS:-3} \
    xvfb-run -a -s "-screen 0 1366x768x24" \
    timeout -k 10 $((GUI_TIMEOUT + 120)) \
    qgis --nologo --noversioncheck --profiles-path "$WORK" --code "$ROOT/tests/gui/gui_check.py" \
    >"$WORK/qgis.log" 2>&1 || status=$?

if [ ! -f "$WORK/result.json" ]; then
    echo "gui-check: FAILED, QGIS exited with status $status and wrote no result; see $WORK/qgis.log"
    tail -20 "$WORK/qgis.log" || true
    exit 1
fi
if ! "$PY" -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))['ok'] else 1)" "$WORK/result.json"; then
    echo "gui-check: FAILED; see $WORK/result.json, $WORK/gui_check.log and $WORK/failure.png"
    cat "$WORK/result.json"
    exit 1
fi

for shot in "$SHOTS"/[0-9]_*.png; do
    if [ "$(stat -c %s "$shot")" -gt $MAX_BYTES ]; then
        "$IMAGEMAGICK/convert" "$shot" -strip -colors 256 "PNG8:$shot"
    fi
    cp "$shot" "$WORK/original.png"
    for scale in 85 70 55; do
        [ "$(stat -c %s "$shot")" -gt $MAX_BYTES ] || break
        "$IMAGEMAGICK/convert" "$WORK/original.png" -strip -resize "${scale}%" -colors 256 "PNG8:$shot"
    done
    echo "gui-check: $shot ($(stat -c %s "$shot") bytes)"
done
if [ "$status" -eq 3 ]; then
    # gui_check.py's own status: QGIS did not close within 30 s of File > Exit and was stopped;
    # where every thread stood is in exit_hang_python.txt and exit_hang_gdb.txt.
    echo "gui-check: FAILED, QGIS did not close within 30 s of File > Exit; see $WORK/exit_hang_gdb.txt"
    exit 1
elif [ "$status" -ne 0 ]; then
    # every step passed, but QGIS itself did not end cleanly (a crash on exit is a bug too)
    echo "gui-check: FAILED, every step passed but QGIS exited with status $status; see $WORK/qgis.log"
    tail -20 "$WORK/qgis.log" || true
    exit 1
fi
"$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); print('gui-check: OK', {k: r.get(k) for k in ('preselected', 'tags', 'train', 'suggest', 'polygons')})" "$WORK/result.json"
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
