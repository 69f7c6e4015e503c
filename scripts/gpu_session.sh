#!/usr/bin/env bash
# One device session that outlives the 10-minute call limit: the jobs run in a new process session
# (setsid), which the device keeps running until the machine goes back, and the calls that
# follow (within the machine's 30 s idle release) only wait and, last, collect the results.
#   bash scripts/gpu_session.sh start      # call 1: GPU benches ($BENCH), then launch the jobs
#   bash scripts/gpu_session.sh wait 560   # calls 2..: wait up to N s (returns early when all are done)
#   bash scripts/gpu_session.sh judge      # optional: drive each candidate and the shipped engine,
#                                          # alone and in the stack (JUDGE_PLANNERS, "<job>-stack" rows),
#                                          # on the tuning seeds with all cores (judge.json, judge.md),
#                                          # then scripts/probe_obstacles.py and probe_speedup.py on each (judge.md)
#   OUT=$OUT bash scripts/gpu_session.sh collect   # last call: copy what exists (also partial) to $OUT
# Jobs (all from a committed checkpoint, all on scenario seeds never used for held-out rows):
#   plain   on-policy student, $ITER iterations, new training seeds ($TRAIN_SEED)
#   hazard  the same with hard-braking expert frames oversampled ($HAZARD extra copies)
#   motion  the same with the multi-sweep preset tiny_motion (from onpolicy_tiny_motion.pt, the
#           best multi-sweep student so far; training seeds $MOTION_SEED, default $TRAIN_SEED)
#   observe, motion_observe   plain / motion with labels from the expert cut to the student's
#           view (--observable-labels: objects inside the pillar range, no agent start times)
# CF_SHARE (all training jobs): share of frames that also get a counterfactual parked object close
#   ahead, labelled by the expert (--counterfactual-share; default onpolicy.counterfactual.share, 0)
# BASE_HAZARD (all training jobs but hazard, which takes HAZARD): extra copies of hard-braking frames (default 0)
# FINETUNE_LR (all training jobs): peak learning rate of iterations that start from a checkpoint
#   (--finetune-lr; default onpolicy.finetune_lr, 0 = train.lr)
# SPEEDUP (all training jobs): extra copies of the frames where the expert speeds up
#   (--speedup-oversample; default onpolicy.hazard.speedup_oversample, 0)
# INTENSITY_DROPOUT (all training jobs): share of samples trained with zero LiDAR intensities
#   (--intensity-dropout; default onpolicy.intensity_dropout, 0)
#   camera  scripts/camera_compare.sh: tiny vs tiny_cam, same budget, held-out rows on 9800/9500
# Back come at most 8 files: judge.json, bench_gpu.txt, then <job>.pt and <job>.tar.gz per job,
# session.log (judge.md and the logs are inside the tarballs).
# The judge (JUDGE_ROWS, default "9200:0.5 9200:mixed"; JUDGE_N scenarios x 20 s each) runs on
# the GPU machine's 16 cores, about 1 minute per 30-scenario row there against 7 on a 2-core
# workstation; tuning seeds only. JUDGE_ENGINES (default "shipped" + every job) picks the engines.
#   PROMOTE_SEEDS="a b" bash scripts/gpu_session.sh promote   # optional, after judge, fresh seeds only:
# `vla-edge-train promote` of each job's export into a copy of engines/ on those seeds, mixed
# difficulty, JUDGE_N scenarios each, all cores (promote_<job>.log, appended to judge.md); engines/
# itself is never touched here: a passing candidate is promoted on a workstation with the same command.
set -uo pipefail
S=/tmp/vla_session
# The jobs run from a copy of the checkout: every device call copies the working tree again, and a
# collection worker once found a module missing mid-copy. judge and collect use the copy too.
R=/tmp/vla_repo
JOBS="${JOBS:-plain hazard camera}"
ITER="${ITER:-2}" SCEN="${SCEN:-220}" MINUTES="${MINUTES:-2.5}" TRAIN_SEED="${TRAIN_SEED:-310}" HAZARD="${HAZARD:-2}"
CAM_SCEN="${CAM_SCEN:-150}" CAM_MINUTES="${CAM_MINUTES:-2.5}" CAM_HELDOUT_N="${CAM_HELDOUT_N:-20}"
LIMIT_S="${LIMIT_S:-1260}"  # every job is killed after this many seconds (the device session is 30 min)
TRAIN_JOBS="plain hazard motion observe motion_observe"  # the jobs of scripts/gpu_student.sh, below
log() { echo "[$(date +%T)] $*" | tee -a "$S/session.log"; }
engine_of() {  # the ONNX a judge row drives ("" = the shipped engine); exit 1 when the job exported none
  [ "$1" = shipped ] && { echo ""; return 0; }
  [ -f "$S/$1/export/student.onnx" ] && echo "$S/$1/export/student.onnx"
}
setup() {
  if [ -d .whl ] && ! python3 -c "import rosbags, pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  fi
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
}
case "${1:-}" in
start) ;;
*) [ -d "$R" ] && cd "$R" ;;
esac
case "${1:-}" in
start)
  rm -rf "$R" && cp -a . "$R" && cd "$R" || exit 1
  mkdir -p "$S" && setup
  # the benches run before the jobs load the GPU and the cores (BENCH: any of model frame train tests)
  for b in ${BENCH:-model}; do
    log "bench: $b"
    case $b in
    model) python3 bench/bench_model_gpu.py --presets tiny tiny_motion tiny_cam --iters 200 ;;
    frame) VLA_EDGE_SHARED_DATA="${VLA_EDGE_SHARED_DATA:-$PWD/test/data}" python3 bench/bench_gpu_frame.py --iters 200 ;;  # ../shared is not carried
    train) python3 bench/bench_train_gpu.py --batch 256 --profile ;;
    tests) python3 -m pytest -q -p no:cacheprovider test/test_torch_pillarize_gpu.py test/test_backends_torch_cuda.py test/test_model_pillars.py ;;
    esac >> "$S/bench_gpu.txt" 2>&1
    tail -12 "$S/bench_gpu.txt"
  done
  for j in $JOBS; do
    case $j in
    plain | hazard | motion | observe | motion_observe)
      h="${BASE_HAZARD:-0}" preset=tiny seed="$TRAIN_SEED" obs=0
      [ "$j" = hazard ] && h="$HAZARD"
      init=training/checkpoints/onpolicy_tiny.pt
      case $j in motion*) preset=tiny_motion seed="${MOTION_SEED:-$TRAIN_SEED}" init=training/checkpoints/onpolicy_tiny_motion.pt ;; esac
      case $j in *observe) obs=1 ;; esac
      env INIT="$init" ITER="$ITER" SCEN="$SCEN" MINUTES="$MINUTES" HELDOUT=0 \
        EVAL_SCEN="${EVAL_SCEN:-8}" TRAIN_SEED="$seed" HAZARD="$h" PRESET="$preset" OBSERVABLE="$obs" CF_SHARE="${CF_SHARE:-}" SPEEDUP="${SPEEDUP:-}" INTENSITY_DROPOUT="${INTENSITY_DROPOUT:-}" FINETUNE_LR="${FINETUNE_LR:-}" TRAIN_LIMIT_S="$LIMIT_S" \
        WORK="$S/$j" OUT="$S/out_$j" \
        setsid nohup bash scripts/gpu_student.sh > "$S/$j.log" 2>&1 < /dev/null & ;;
    camera)
      env ITER=1 SCEN="$CAM_SCEN" MINUTES="$CAM_MINUTES" HELDOUT_N="$CAM_HELDOUT_N" WORK="$S/camwork" OUT="$S/out_camera" \
        setsid nohup timeout "$LIMIT_S" bash scripts/camera_compare.sh > "$S/camera.log" 2>&1 < /dev/null & ;;
    esac
    log "started $j (pid $!)"
  done ;;
wait)
  end=$(( $(date +%s) + ${2:-560} ))
  while [ "$(date +%s)" -lt "$end" ] && pgrep -f "scripts/(gpu_student|camera_compare).sh" > /dev/null; do sleep 10; done
  for j in $TRAIN_JOBS camera; do  # the jobs that started (no need to repeat JOBS here)
    [ -f "$S/$j.log" ] && { echo "== $j"; grep -v "it/s\]$" "$S/$j.log" | tail -6; }
  done
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  uptime ;;
judge)
  setup
  rows="${JUDGE_ROWS:-9200:0.5 9200:mixed}" n="${JUDGE_N:-30}" w=$(( $(nproc) / 2 ))
  mkdir -p "$S/judge"
  for row in $rows; do
    seed=${row%%:*} diff=${row#*:}
    for j in ${JUDGE_ENGINES:-shipped $TRAIN_JOBS}; do
      eng=$(engine_of "$j") || continue
      for pl in ${JUDGE_PLANNERS:-student stack}; do  # the stack too: the vehicle runs it
        name=$j; [ "$pl" = stack ] && name="$j-stack"
        # two rows at a time, half the cores each
        while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 1; done
        timeout 600 python3 -m vla_edge sim evaluate --planner "$pl" ${eng:+--engine "$eng"} --backend onnxruntime \
          --seed "$seed" --difficulty "$diff" --scenarios "$n" --seconds 20 --workers "$w" --no-progress \
          --out "$S/judge/${name}_${seed}_${diff}.json" > "$S/judge/${name}_${seed}_${diff}.log" 2>&1 &
      done
    done
  done
  wait
  python3 scripts/judge_table.py "$S/judge" --out "$S/judge.json" | tee "$S/judge.md"
  for j in shipped $TRAIN_JOBS; do  # a parked object close ahead; an open road at a low speed
    eng=$(engine_of "$j") || continue
    echo "probe $j: $(python3 scripts/probe_obstacles.py ${eng:+--engine "$eng"} 2>/dev/null | tail -1)" | tee -a "$S/judge.md"
    echo "speed-up probe $j: $(python3 scripts/probe_speedup.py ${eng:+--engine "$eng"} 2>/dev/null | tail -1)" | tee -a "$S/judge.md"
  done ;;
promote)
  setup
  seeds="${PROMOTE_SEEDS:?set PROMOTE_SEEDS (fresh seeds)}" n="${JUDGE_N:-30}"
  for j in $TRAIN_JOBS; do
    [ -f "$S/$j/export/student.onnx" ] || continue
    rm -rf "$S/eng_$j" && mkdir -p "$S/eng_$j" && cp engines/student.onnx engines/student.json "$S/eng_$j"/
    timeout 900 python3 -m training promote "$S/$j/export" --engines "$S/eng_$j" --seed $seeds \
      --scenarios "$n" --difficulty mixed --workers "$(nproc)" > "$S/promote_$j.log" 2>&1
    echo "promote $j on seeds $seeds (exit $?):" | tee -a "$S/judge.md"
    grep -v "it/s\]$" "$S/promote_$j.log" | tail -12 | tee -a "$S/judge.md"
  done ;;
collect)
  OUT="${OUT:?set OUT}"
  cp "$S/judge.json" "$OUT"/ 2>/dev/null
  for j in $TRAIN_JOBS; do
    [ -d "$S/$j" ] || continue
    last=$(ls "$S/$j"/iter[0-9]*/best.pt 2>/dev/null | sort -V | tail -1)
    [ -n "$last" ] && cp "$last" "$OUT/$j.pt"
    mkdir -p "$S/pack_$j" && cp "$S/$j"/results.{md,json} "$S/$j"/state.json "$S/$j.log" "$S/judge.md" "$S/pack_$j"/ 2>/dev/null
    cp "$S/$j"/export/student.{onnx,json} "$S/pack_$j"/ 2>/dev/null
    tar -C "$S" -czf "$OUT/$j.tar.gz" "pack_$j"
  done
  [ -d "$S/out_camera" ] && cp "$S/camera.log" "$S/out_camera"/ && tar -C "$S" -czf "$OUT/camera.tar.gz" out_camera
  cp "$S/bench_gpu.txt" "$S/session.log" "$OUT"/ 2>/dev/null
  ls -la "$OUT" ;;
*) echo "usage: $0 start | wait SECONDS | judge | promote (PROMOTE_SEEDS=...) | collect (OUT=...)"; exit 2 ;;
esac
