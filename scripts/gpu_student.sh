#!/usr/bin/env bash
# One GPU session (≈ 9 min on an H100 + 16 cores): on-policy distillation of the tiny student,
# then held-out closed-loop figures and the promotion check, all on scenario seeds never trained
# or tuned on (training 300.., per-iteration rows 9100; held-out 9400 default, 9500 mixed,
# promotion 9700 mixed). Run from the repository root:
#   OUT=out/gpu bash scripts/gpu_student.sh
# Writes at most 8 files to $OUT: results.{json,md} (per-iteration table), student.pt (checkpoint),
# student.{onnx,json,ts} (the exported candidate; its manifest holds the promotion record when it
# beat the shipped engine), heldout.json (all held-out figures). Nothing is copied into engines/:
# commit the candidate with `vla-edge-train promote $OUT` on a workstation.
set -uo pipefail
OUT="${OUT:-out/gpu}"
WORK="${WORK:-/tmp/vla_onpolicy}"
EVAL="${EVAL:-/tmp/vla_heldout}"
ITER="${ITER:-2}"
SCEN="${SCEN:-220,150}"
MINUTES="${MINUTES:-1.7,1.3}"
HELDOUT_N="${HELDOUT_N:-30}"
# EVAL_SCEN: scenarios of the per-iteration closed-loop row (default 8; 0 skips it, for runs judged afterwards)
HELDOUT="${HELDOUT:-1}"  # 0: train and export only (run the held-out rows on a workstation)
PRESET="${PRESET:-tiny}"  # tiny_cam: the camera student (collects images; docs/training.md)
FAMILIES="${FAMILIES:-}"  # comma-separated training families (default onpolicy.families), e.g. add stop_line
TRAIN_SEED="${TRAIN_SEED:-}"  # scenario seed base (default onpolicy.train_seed): a new one per chained call
HAZARD="${HAZARD:-}"  # extra copies of hard-braking expert frames (default onpolicy.hazard.oversample)
SPEEDUP="${SPEEDUP:-}"  # extra copies of speeding-up expert frames (default onpolicy.hazard.speedup_oversample)
INTENSITY_DROPOUT="${INTENSITY_DROPOUT:-}"  # share of samples with zero intensities (default onpolicy.intensity_dropout)
WORKERS="${WORKERS:-}"  # collection processes (default onpolicy.workers: all cores)
OBSERVABLE="${OBSERVABLE:-0}"  # 1: labels from the expert cut to the student's view (--observable-labels)
CF_SHARE="${CF_SHARE:-}"  # share of frames with a counterfactual parked object close ahead (--counterfactual-share)
FINETUNE_LR="${FINETUNE_LR:-}"  # peak learning rate when training starts from a checkpoint (--finetune-lr)
mkdir -p "$OUT" "$EVAL"
# Machines without rosbags (the GPU image) get it from wheels downloaded into .whl/ beforehand.
if [ -d .whl ] && ! python3 -c "import rosbags" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD"  # also when gpu_session.sh installed the wheels already
PY=python3
log() { echo "[$(date +%T)] $*"; }

log "training: $ITER iterations, scenarios $SCEN, minutes $MINUTES"
timeout "${TRAIN_LIMIT_S:-390}" $PY -m training onpolicy --workdir "$WORK" --iterations "$ITER" --scenarios "$SCEN" --minutes "$MINUTES" \
  --eval-scenarios "${EVAL_SCEN:-8}" --batch-size 256 --preset "$PRESET" ${FAMILIES:+--families "$FAMILIES"} ${INIT:+--init "$INIT"} \
  ${TRAIN_SEED:+--train-seed "$TRAIN_SEED"} ${HAZARD:+--hazard-oversample "$HAZARD"} ${SPEEDUP:+--speedup-oversample "$SPEEDUP"} ${INTENSITY_DROPOUT:+--intensity-dropout "$INTENSITY_DROPOUT"} ${WORKERS:+--workers "$WORKERS"} \
  $([ "$OBSERVABLE" = 1 ] && echo --observable-labels) ${CF_SHARE:+--counterfactual-share "$CF_SHARE"} ${FINETUNE_LR:+--finetune-lr "$FINETUNE_LR"} 2>&1 | grep -v "it/s\]$" | tail -40
cp "$WORK"/results.json "$WORK"/results.md "$OUT"/ 2>/dev/null
last=$(ls "$WORK"/iter[0-9]*/best.pt 2>/dev/null | sort -V | tail -1)  # an interrupted iteration has none
[ -n "$last" ] && cp "$last" "$OUT/student.pt" && log "checkpoint: $last"
if [ ! -f "$WORK/export/student.onnx" ]; then log "no exported student; stopping"; exit 1; fi
if [ "$HELDOUT" = 0 ]; then
  cp "$WORK"/export/student.onnx "$WORK"/export/student.json "$OUT"/
  log "done (HELDOUT=0: no held-out rows)"; exit 0
fi

log "held-out closed loop ($HELDOUT_N scenarios x 20 s per row) and promotion check, in parallel"
cand="$WORK/export/student.onnx"
ev() {  # name planner seed difficulty [engine]
  timeout "${EVAL_LIMIT_S:-150}" $PY -m vla_edge sim evaluate --planner "$2" --seed "$3" --difficulty "$4" --scenarios "$HELDOUT_N" \
    --seconds 20 --workers 2 --backend onnxruntime --no-progress ${5:+--engine "$5"} --out "$EVAL/$1.json" \
    > "$EVAL/$1.log" 2>&1
}
ev cand_student_9400 student 9400 0.5 "$cand" &
ev cand_stack_9400 stack 9400 0.5 "$cand" &
ev shipped_stack_9400 stack 9400 0.5 &
ev frenet_9400 frenet 9400 0.5 &
ev cand_student_9500 student 9500 mixed "$cand" &
ev cand_stack_9500 stack 9500 mixed "$cand" &
ev frenet_9500 frenet 9500 mixed &
mkdir -p /tmp/eng && cp engines/student.onnx engines/student.json /tmp/eng/
timeout "${EVAL_LIMIT_S:-150}" $PY -m training promote "$WORK/export" --engines /tmp/eng --seed 9700 --scenarios "$HELDOUT_N" \
  --difficulty mixed --workers 4 > "$EVAL/promote.log" 2>&1
echo "promote exit $?" >> "$EVAL/promote.log"
wait
cp "$WORK"/export/student.onnx "$WORK"/export/student.json "$OUT"/
[ -f "$WORK/export/student.ts" ] && cp "$WORK/export/student.ts" "$OUT"/
$PY - "$EVAL" "$OUT/heldout.json" <<'EOF'
import json, pathlib, sys
from vla_edge.sim.summary import summarize_file
d, out = pathlib.Path(sys.argv[1]), {}
for f in sorted(d.glob("*.json")):
    out[f.stem] = summarize_file(f)
out["promote_log"] = (d / "promote.log").read_text()[-3000:]
out["logs"] = {f.stem: f.read_text()[-600:] for f in sorted(d.glob("*.log")) if f.stem != "promote"}
pathlib.Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
for k, v in out.items():
    if isinstance(v, dict) and "score" in v:
        print(f"{k:22s} score {v['score']:.3f} coll {v['collision_scenarios']} offroad {v['offroad_scenarios']} "
              f"choices {v['choices']} raw {v['raw_pass_fraction']}")
print(out["promote_log"][-800:])
EOF
log done
