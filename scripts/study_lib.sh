# Shared by the seed studies (sourced, not run): `run OUT ARGS...` runs one capdist command into OUT
# unless OUT already holds a report.json (so an interrupted study resumes); `teacher DATA` trains the
# study's ResNet-18 teacher for DATA once (TEACHER_EPOCHS epochs, default 6) and prints its directory;
# `want ROW` says whether ROW is among the space-separated ROWS (default: every row). Needs R (runs root) and PY.
run() { local out=$1; shift; [ -f "$out/report.json" ] && return 0; echo "$(date +%T) $out"; "$PY" -m capdist "$@" --out "$out" --overwrite --quiet > /dev/null; }
teacher() {
  local epochs=${TEACHER_EPOCHS:-6} t="$R/teacher-$1"
  [ "$epochs" = 6 ] || t="$t-e$epochs"
  [ -f "$t/model.safetensors" ] || "$PY" -m capdist train --model resnet18 --data "$1" --train-subset 3000 \
      --epochs "$epochs" --lr 0.05 --quiet --out "$t" --overwrite > /dev/null
  echo "$t"
}
want() { [[ "${ROWS:-all}" == all || " ${ROWS} " == *" $1 "* ]]; }
