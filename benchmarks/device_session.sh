#!/usr/bin/env bash
# One prepared GPU lease (device tool): the figures issues #6, #8 and #10 need from a GPU.
#
#   STAGES=speed   bash benchmarks/device_session.sh   # ~4 min: genlv-base sweep (eager + regional
#                                                      # compile), official-size baselines, attention cost
#   STAGES=genlv-s bash benchmarks/device_session.sh   # synthesise a train set on all cores, train
#                                                      # genlv-s until DEADLINE, evaluate, export
#   STAGES=speed,genlv-s DEADLINE_S=570 bash ...       # both in one lease: synthesis runs in the background
#                                                      # during the speed stage; training gets what is left
#   STAGES=equal-budget bash benchmarks/device_session.sh  # issue #8: scripts/equal_budget.py --plan gpu-lease
#                                                      # (~12 min of H200 time; EB_ONLY=a,b: a subset; EB_PLAN=gpu: the long plan)
#   STAGES=speed-variants DEADLINE_S=420 bash ...     # genlv-base: eager and regional compile at batch 8, then
#                                                      # block activation checkpointing at batch 64 (VARIANT_EAGER=0,
#                                                      # VARIANT_COMPILE=0 or VARIANT_CKPT=0 skips one; PROFILE=1: a profile)
#   STAGES=portable-kernels bash ...                   # ~15 s: synthesis bytes unchanged with the CPU's newer
#                                                      # SIMD features off (docs/shards.md; an AVX-512 check)
#   SMOKE=1 STAGES=speed,genlv-s,equal-budget bash benchmarks/device_session.sh   # CPU check of this script
#
# Run from the repository root. On the device machine dask and webdataset are missing: carry
# .whl/ (see /work/.library/device/README.md; this script installs them into /tmp/site). Results
# go to $OUT (the device tool's folder, else out/device): figures.tar.gz (every JSON/CSV/Markdown
# figure) and session.log, plus for genlv-s the checkpoint folder genlv-s/ (config.json and bf16
# model.safetensors, ~10 MB, with the run's metrics.csv and summary.json). A checkpoints/genlv-s
# folder in the tree is carried forward: training starts from its weights (--init), so successive
# leases keep improving the shipped model. Back home, ship it with its curve appended:
#   python scripts/export_checkpoint.py FILES_AT/genlv-s checkpoints/genlv-s --continues
#
# Knobs (environment): DEADLINE_S (seconds from the start by which everything must be done; the
# training budget is what remains minus EVAL_RESERVE_S), MINUTES (caps the training budget),
# STEPS (its schedule; default auto: sized to the budget from a timed step), LR (1e-4), WARMUP (50),
# BATCH (64), SIZE (128), N_TRAIN (pairs per task, 1024), LIMIT (eval queries per task, 16),
# TRAIN_SOURCE (the train split's image source, deadleaves:tint=0.25, which the equal-budget plan's runs
# so far used; for genlv-s, deadleaves:tint=0.25,exposure=0.3,levels=0.1,blur=1,rmin=0.05, whose mild
# degradations cost about what they cost a photo (its model card, run 23), in a WORK of its own), TASK_WEIGHTS (genlv-s's task
# mix: a JSON object or file, e.g. scripts/genlv-s-task-weights.json; default uniform),
# IDENTITY_RATE (llvbench train --identity-rate: the share of identity pairs; default 0),
# ONE_COLOUR (N > 0: write N one-colour images with scripts/one_colour_images.py, seed ONE_COLOUR_SEED,
# default 32, and interleave them as one more part of TRAIN_SOURCE: with run 28's two-part spec, a third
# of the images, as genlv-s run 32 had them; default 0),
# LLVBENCH_COMMIT (the commit of the tree, which the device copy has no git to tell: set it on the
# command line, LLVBENCH_COMMIT=$(git rev-parse --short HEAD) written out, so equal-budget records it).
set -euo pipefail

OUT=${OUT:-out/device}
WORK=${WORK:-/tmp/llvbench-session}
STAGES=${STAGES:-speed}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$WORK/figures"
exec > >(tee -a "$OUT/session.log") 2>&1
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started)) s] $*"; }
# Whatever happens, what was measured comes back.
trap 'tar -czf "$OUT/figures.tar.gz" -C "$WORK" figures && echo "figures in $OUT/figures.tar.gz"' EXIT

if ! python3 -c "import dask, distributed, webdataset" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
FIG=$WORK/figures
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU (CPU run)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"

if [ "$SMOKE" = 1 ]; then  # the same commands at sizes a CPU finishes in a minute or two
    BASE="--arch genlv-tiny --size 32 --steps 2 --warmup 1"
    COMPILED_BATCHES=1,2; EAGER_BATCHES=1,2; PEER_STEPS="--steps 2 --warmup 1"
    PEERS=("--arch promptgip-fixture --size 32 --batch 2" "--arch promptir-s --size 32 --batch 2"
           "--arch painter-fixture --size 32 --batch 2")
    ATTN="--sizes 256 --repeats 1 --warmup 0"
    MINUTES=${MINUTES:-0.3} STEPS=${STEPS:-4} COMPILED_BATCHES=2 VARIANT_BATCH=2 CKPT_BATCH=2 BATCH=${BATCH:-2} SIZE=${SIZE:-64} N_TRAIN=${N_TRAIN:-8} LIMIT=${LIMIT:-2}
    SMOKE_TASKS=gaussian_noise,canny; TASKS="--tasks $SMOKE_TASKS"; ARCH=genlv-tiny; WORKERS=1; DEV=cpu
else
    BASE="--arch genlv-base --size 256 --bf16 --steps 8 --warmup 2"
    # Eager at every batch size; regional compile (one compilation per batch size) at the official's batch
    # (at 64 it ran out of memory in lease 1).
    EAGER_BATCHES=8,16,32,64; COMPILED_BATCHES=${COMPILED_BATCHES:-8}; PEER_STEPS="--steps 5 --warmup 2"
    # The official code's settings in shared/reference/peer-throughput.md (batch, canvas).
    PEERS=("--arch promptgip --size 256 --batch 8 --bf16" "--arch promptir --size 256 --batch 16 --bf16"
           "--arch painter --size 448 --batch 4 --bf16")
    ATTN="--sizes 256,512 --device cuda"
    MINUTES=${MINUTES:-8} STEPS=${STEPS:-auto} BATCH=${BATCH:-64} SIZE=${SIZE:-128} N_TRAIN=${N_TRAIN:-1024} LIMIT=${LIMIT:-16}
    TASKS=""; ARCH=genlv-s; WORKERS=8; DEV=cuda
fi
# A compile that hangs must not eat the lease. On 2 CPU cores (SMOKE) genlv-tiny's regional compile
# takes ~3 min (82 s of it the training warm-up), so the smoke run gets longer.
if [ "$SMOKE" = 1 ]; then COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-300}; else COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-170}; fi
DEADLINE_S=${DEADLINE_S:-100000}; EVAL_RESERVE_S=${EVAL_RESERVE_S:-70}

remaining() { echo $((DEADLINE_S - ($(date +%s) - started))); }

synthesise() {  # once per lease: the genlv-s and equal-budget stages share the shards
    if [ ! -f "$WORK/shards/manifest.json" ]; then
        # Colour-cast dead leaves by default: plain ones average to grey, and genlv-s trained on
        # them pulls photo colours towards grey (results/gpu-h200/README.md, run 9; card, run 10).
        local train_source=${TRAIN_SOURCE:-deadleaves:tint=0.25}
        if [ "${ONE_COLOUR:-0}" -gt 0 ]; then
            # One-colour images (a sky, a backdrop) as one more interleaved part: dark ones are the
            # prompts genlv-s fails on (model card, run 32). Written here: the device starts bare.
            stamp "one-colour images: $ONE_COLOUR of $SIZE px"
            $PY scripts/one_colour_images.py "$WORK/one-colour" --count "$ONE_COLOUR" --size "$SIZE" \
                --seed "${ONE_COLOUR_SEED:-32}" 2>&1 | tail -n 1
            train_source="$train_source+folder:$WORK/one-colour"
        fi
        printf 'synth:\n  sources: {train: "%s", test: photos, unseen: photos}\n' "$train_source" \
            > "$WORK/synth-params.yaml"
        stamp "synthesis: $N_TRAIN train pairs per task at $SIZE px from $train_source (${SYNTH_WORKERS:-all} workers)"
        $PY -m pipelines.cli synth --params "$WORK/synth-params.yaml" --out "$WORK/shards" --splits train,test \
            --n-train "$N_TRAIN" --n-test 16 \
            --size "$SIZE" $TASKS ${SYNTH_WORKERS:+--workers "$SYNTH_WORKERS"} --summary "$FIG/synth.json" --no-progress
        stamp "synthesis done"
    fi
}

SYNTH_PID=""
if [[ ( ",$STAGES," == *",speed,"* || ",$STAGES," == *",speed-variants,"* ) &&
      ( ",$STAGES," == *",genlv-s,"* || ",$STAGES," == *",equal-budget,"* ) ]]; then
    # The speed stages use the GPU (and a few cores for compilation): synthesise meanwhile.
    SYNTH_WORKERS=${SYNTH_WORKERS:-10}
    synthesise > "$WORK/synth.log" 2>&1 &
    SYNTH_PID=$!
fi

if [[ ",$STAGES," == *",portable-kernels,"* ]]; then
    # docs/shards.md: with the portable kernels, synthesis must write the same shards when this CPU's
    # newer SIMD features are switched off (an older CPU, simulated as in tests/test_cpu_paths.py).
    # The CPU machine has no AVX-512; this checks the pin where the device's CPU has it (~15 s).
    stamp "portable kernels: the same shards with this CPU's newer SIMD features switched off?"
    portable_synth() {
        rm -rf "$WORK/kernels-$1"
        env "${@:2}" $PY -m pipelines.cli synth --tasks retouch,rtv,sepia,local_laplacian,vermeer,perceptual_edges \
            --out "$WORK/kernels-$1" --n-train 4 --n-test 4 --n-unseen 4 --size 64 --summary "" --no-progress > /dev/null
    }
    portable_synth here LLVBENCH_CPU_PATHS=portable
    portable_synth older LLVBENCH_CPU_PATHS=portable NPY_DISABLE_CPU_FEATURES=X86_V3 OPENBLAS_CORETYPE=Sandybridge \
        OPENCV_IPP=sse42 OPENCV_CPU_DISABLE=AVX,FP16,AVX2,AVX512-SKX OPENCV_LOG_LEVEL=ERROR
    portable_synth native LLVBENCH_CPU_PATHS=native
    $PY - "$WORK" "$FIG/portable-kernels.json" <<'PYEOF'
import json, sys
from taskgen.atomic import atomic_write_json
work, out = sys.argv[1:]
runs = {name: {e["path"]: e for e in json.load(open(f"{work}/kernels-{name}/manifest.json"))["shards"]}
        for name in ("here", "older", "native")}
def moved(a, b):
    return sorted(p for p in runs[a] if runs[a][p]["sha256"] != runs[b][p]["sha256"])
figures = {"shards": len(runs["here"]), "portable_moved_on_the_older_cpu": moved("here", "older"),
           "native_differs_from_portable": moved("here", "native"),
           "software": {name: sorted({e["software"] for e in run.values()}) for name, run in runs.items()}}
atomic_write_json(out, figures, indent=1)
print(json.dumps(figures, indent=1))
print("PORTABLE KERNELS HOLD" if not figures["portable_moved_on_the_older_cpu"] else "PORTABLE KERNELS MOVED")
PYEOF
fi

if [[ ",$STAGES," == *",speed,"* ]]; then
    stamp "genlv-base: eager sweep (issue #6 targets: >=105 samples/s, >=25 % MFU, <=10 ms b=1; official: 10.5 samples/s at batch 8)"
    $PY benchmarks/bench_train.py $BASE --batch "$EAGER_BATCHES" --json "$FIG/bench-train-eager.json" \
        || echo "eager sweep failed"
    stamp "genlv-base: regional torch.compile at batch $COMPILED_BATCHES (target: compile < 2 min)"
    timeout "$COMPILE_TIMEOUT" $PY benchmarks/bench_train.py $BASE --batch "$COMPILED_BATCHES" --compile regional \
        --json "$FIG/bench-train-compiled.json" || echo "compiled run failed or ran past ${COMPILE_TIMEOUT} s"
    for peer in "${PEERS[@]}"; do
        name=$(echo "$peer" | awk '{print $2}')
        stamp "peer $name (official-size; shared/reference/peer-throughput.md)"
        $PY benchmarks/bench_train.py $peer $PEER_STEPS --json "$FIG/bench-train-$name.json" \
            || echo "peer $name failed"
    done
    stamp "attention cost (paper Fig. 4)"
    $PY benchmarks/bench_attention.py $ATTN --json "$FIG/attention-cost.json" || echo "attention benchmark failed"
fi


if [[ ",$STAGES," == *",speed-variants,"* ]]; then
    # What the sweep leaves unknown, the most telling first (VARIANT_EAGER=0, VARIANT_COMPILE=0 or
    # VARIANT_CKPT=0 skips one). (0) Eager batch 8, below. (1) Compiled training speed, never
    # measured: lease 1's compiled run went straight to batch 64 and ran out of memory; lease 2's
    # (NHWC, cuDNN autotuning) had not finished its warm-up after 150 s. So: regional compile at
    # batch 8, NCHW, cuDNN heuristics; its warm-up s is the compile time (target < 2 min).
    # (2) Batch 64 with block activation checkpointing (target: batch 64 at 256² in 80 GiB): lease 4
    # failed at 65,536 attention windows (since sliced), lease 5 printed nothing in 150 s with NHWC
    # and autotuning, whose warm-up at batch 8 alone took 48 s. Heuristics and NCHW here too;
    # VARIANT_FLAGS / CKPT_FLAGS put either back. (3) PROFILE=1: where an eager step's time goes
    # (lease 2's profile: results/gpu-h200/).
    if [ "${VARIANT_EAGER:-1}" = 1 ]; then
        # (0) Eager batch 8 exactly as lease 4 ran it (16.2 samples/s, 64.3 GiB there): what the
        # norms that now keep bf16 under autocast (2026-12-05) and the hand-written GDFN/MDTA backward
        # (2026-12-06) are worth on the GPU. benchmarks/memory_traffic.py counts 83.4 -> 53.9 GB per
        # sample between the two, which predicts ~25 samples/s (results/memory-traffic/README.md).
        stamp "genlv-base: eager at batch 8 (lease 4's settings)"
        timeout "$(( $(remaining) < 120 ? $(remaining) : 120 ))" \
            $PY benchmarks/bench_train.py ${BASE%% --steps*} --steps 5 --warmup 2 --batch 8 --no-inference --trace \
            --json "$FIG/bench-train-eager-b8.json" || echo "eager batch-8 run failed or ran out of time (status $?)"
    fi
    if [ "${VARIANT_COMPILE:-1}" = 1 ]; then
        stamp "genlv-base: regional compile at batch ${VARIANT_BATCH:-8} (${VARIANT_FLAGS:---no-autotune})"
        timeout "$(( $(remaining) - 30 < COMPILE_TIMEOUT ? $(remaining) - 30 : COMPILE_TIMEOUT ))" \
            $PY benchmarks/bench_train.py ${BASE%% --steps*} --steps 5 --warmup 2 --batch "${VARIANT_BATCH:-8}" \
            --compile regional ${VARIANT_FLAGS:---no-autotune} --trace \
            --json "$FIG/bench-train-compiled-b${VARIANT_BATCH:-8}.json" \
            || echo "compiled run failed or ran out of time (status $?)"
    fi
    if [ "${VARIANT_CKPT:-1}" = 1 ]; then
        stamp "genlv-base: eager + block activation checkpointing at batch ${CKPT_BATCH:-64} (${CKPT_FLAGS:---no-autotune})"
        timeout "$(( $(remaining) < ${CKPT_TIMEOUT:-150} ? $(remaining) : ${CKPT_TIMEOUT:-150} ))" \
            $PY benchmarks/bench_train.py ${BASE%% --steps*} --steps 3 --warmup 1 \
            --batch "${CKPT_BATCH:-64}" --checkpointing block ${CKPT_FLAGS:---no-autotune} --no-inference --trace \
            --json "$FIG/bench-train-eager-ckpt.json" || echo "eager checkpointed run failed or ran out of time (status $?)"
    fi
    if [ "${PROFILE:-0}" = 1 ]; then
        stamp "genlv-base: profile of one eager training step at batch ${PROFILE_BATCH:-8}"
        timeout "$(remaining)" $PY benchmarks/profile_step.py ${BASE%% --steps*} --batch "${PROFILE_BATCH:-8}" \
            --warmup 1 --steps 1 --rows 40 --out "$FIG/profile-step.txt" | tail -n 42 || echo "profile failed"
    fi
fi

wait_synthesis() {
    if [ -n "$SYNTH_PID" ]; then
        wait "$SYNTH_PID" || echo "background synthesis failed"
        cat "$WORK/synth.log"; SYNTH_PID=""
    fi
    synthesise
}

CALIBRATE_PID=""
if [[ ",$STAGES," == *",genlv-s,"* && "$STEPS" == auto ]]; then
    # STEPS=auto: time the training step on the GPU while synthesis keeps the CPU busy, so the
    # cosine schedule can be sized to end at the budget instead of being cut off mid-way.
    if [ -z "$SYNTH_PID" ]; then synthesise > "$WORK/synth.log" 2>&1 & SYNTH_PID=$!; fi
    stamp "calibrate: $ARCH training step at batch $BATCH, $SIZE px"
    $PY benchmarks/bench_train.py --arch "$ARCH" --size "$SIZE" --batch "$BATCH" $([ "$DEV" = cuda ] && echo --bf16) \
        --ema 0.999 --steps 6 --warmup 2 --no-inference --json "$FIG/calibrate-$ARCH.json" > "$WORK/calibrate.log" 2>&1 &
    CALIBRATE_PID=$!
fi

if [[ ",$STAGES," == *",genlv-s,"* ]]; then
    wait_synthesis
    left=$((DEADLINE_S - ($(date +%s) - started) - EVAL_RESERVE_S))
    MINUTES=$(python3 -c "print(round(max(0.5, min($MINUTES, $left / 60)), 2))")
    if [ -n "$CALIBRATE_PID" ]; then
        wait "$CALIBRATE_PID" || echo "calibration failed"
        cat "$WORK/calibrate.log"
        # steps that fit: the timed rate, less LOADER_MARGIN (data loading, logging) and START_S of
        # loader start-up and cuDNN autotuning; 3000 when the calibration wrote nothing.
        STEPS=$(python3 -c "
import json, sys
try:
    rate = json.load(open('$FIG/calibrate-$ARCH.json'))['rows'][0]['samples_per_s']
except (OSError, KeyError, IndexError, ValueError):
    print(3000); sys.exit()
seconds = max(30.0, $MINUTES * 60 - ${START_S:-25})
print(max(2, int(rate * ${LOADER_MARGIN:-0.85} * seconds / $BATCH)))")
        stamp "schedule sized to the budget: $STEPS steps"
    fi
    echo "train: {}" > "$WORK/empty-params.yaml"
    # lr 1e-4 by default: lease 3 restarted from the shipped weights at 3e-4 and its 825 steps only
    # won back the loss the restart cost (results/gpu-h200/README.md).
    INIT=()
    # the shipped weights carry forward; a SMOKE run trains genlv-tiny, which they do not fit
    if [ "$ARCH" = genlv-s ] && [ -f checkpoints/genlv-s/model.safetensors ]; then
        INIT=(--init checkpoints/genlv-s)
        # ... with the network function they were trained for (their config.json overrides, e.g. input_offset)
        while read -r kv; do if [ -n "$kv" ]; then INIT+=(--override "$kv"); fi; done < <($PY -c \
            'import json; [print(f"{k}={json.dumps(v)}") for k, v in json.load(open("checkpoints/genlv-s/config.json")).get("overrides", {}).items()]')
    fi
    # TASK_WEIGHTS: what --task-weights takes (run 11's mix, the tasks genlv-s lost to identity
    # drawn 3x: scripts/genlv-s-task-weights.json); default uniform.
    WEIGHTS=()
    if [ -n "${TASK_WEIGHTS:-}" ] && [ "$SMOKE" = 1 ]; then
        # The smoke's shards hold two tasks, and train refuses weights for tasks it has no samples of:
        # keep those two (the file is still read, so a broken one fails here as it would on the lease).
        $PY -c 'import json, sys; spec, tasks, out = sys.argv[1:]
weights = json.loads(spec) if spec.lstrip().startswith("{") else json.load(open(spec))
json.dump({t: weights[t] for t in tasks.split(",") if t in weights}, open(out, "w"))' \
            "$TASK_WEIGHTS" "$SMOKE_TASKS" "$WORK/smoke-task-weights.json"
        TASK_WEIGHTS=$WORK/smoke-task-weights.json
    fi
    if [ -n "${TASK_WEIGHTS:-}" ]; then WEIGHTS=(--task-weights "$TASK_WEIGHTS"); fi
    # IDENTITY_RATE: a share of identity pairs (on the CPU, 0.1 raised the mild tasks; card, run 14)
    WEIGHTS+=(--identity-rate "${IDENTITY_RATE:-0}")
    stamp "train $ARCH for at most $MINUTES min (${INIT[*]:-from scratch}; task weights ${TASK_WEIGHTS:-uniform}; identity rate ${IDENTITY_RATE:-0})"
    $PY -m pipelines.cli train --params "$WORK/empty-params.yaml" --arch "$ARCH" --shards "$WORK/shards" \
        --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --lr "${LR:-1e-4}" --warmup "${WARMUP:-50}" --ema 0.999 \
        --max-minutes "$MINUTES" --workers "$WORKERS" --device "$DEV" --log-every 50 --ckpt-every 100000 \
        --out "$WORK/$ARCH" --name genlv-s "${INIT[@]}" "${WEIGHTS[@]}" --no-progress
    cp "$WORK/$ARCH/metrics.csv" "$FIG/train-metrics.csv"
    cp "$WORK/$ARCH/summary.json" "$FIG/train-summary.json"
    stamp "evaluate on the test split ($LIMIT queries per task), with identity as the floor"
    $PY -m pipelines.cli eval --model identity --model "$WORK/$ARCH" --shards "$WORK/shards" --limit "$LIMIT" \
        --tracks main,efficiency --device "$DEV" --save-samples 0 --out "$WORK/eval" --leaderboard "$WORK/lb"
    cp "$WORK/lb/leaderboard.md" "$FIG/genlv-s-leaderboard.md"
    cp "$WORK/lb/model_task.parquet" "$FIG/genlv-s-model_task.parquet"
    stamp "export genlv-s as bf16 safetensors"
    $PY scripts/export_checkpoint.py "$WORK/$ARCH" "$OUT/genlv-s"
fi

save_eb_work() {
    # What a later `equal_budget.py --summarise` needs, without the weights: unpack eb-work/ from
    # figures.tar.gz into out/equal-budget-PLAN (the work folder) next to earlier leases' models.
    # Called after every model too, so a lease cut short still brings back what finished.
    mkdir -p "$FIG/eb-work"
    if [ -d "$WORK/eb/eval" ]; then cp -r "$WORK/eb/eval" "$FIG/eb-work/"; fi
    for run in "$WORK"/eb/*/; do
        if [ -f "$run/summary.json" ]; then
            mkdir -p "$FIG/eb-work/$(basename "$run")"
            cp "$run"/summary.json "$run"/config.json "$run"/metrics.csv "$FIG/eb-work/$(basename "$run")/" 2>/dev/null || true
        fi
    done
}

if [[ ",$STAGES," == *",equal-budget,"* ]]; then
    # Issue #8's equal-budget comparison (scripts/equal_budget.yaml): the same sample budget for
    # every model, so no model's schedule is cut by time. Instead each model trains under the
    # time left (less EB_EVAL_RESERVE_S for the evaluation), in the plan's order (slowest first);
    # one that runs out is left out, and the ones that finished are evaluated together.
    # EB_PLAN=gpu-lease fits one lease; EB_PLAN=gpu EB_ONLY=NAME is one model of the long plan.
    wait_synthesis
    EB_PLAN=${EB_PLAN:-gpu-lease}; EB_ARGS=()
    if [ "$SMOKE" = 1 ]; then
        # The cpu plan holds the same models at -tiny size, so a smoke run checks the lease's EB_ONLY.
        EB_PLAN=cpu; EB_ONLY=$(echo "${EB_ONLY:-vit-tiny,vit-vpip-tiny}" | sed -E 's/-s(,|$)/-tiny\1/g')
        EB_ARGS=(--steps 2 --size "$SIZE")
    fi
    EB=(scripts/equal_budget.py --plan "$EB_PLAN" --shards "$WORK/shards" --device "$DEV" --work "$WORK/eb"
        --out "$FIG/equal-budget-$EB_PLAN" "${EB_ARGS[@]}")
    EB_MODELS=${EB_ONLY:-$($PY -c "import yaml; print(','.join(m['name'] for m in yaml.safe_load(open('scripts/equal_budget.yaml'))['plans']['$EB_PLAN']['models']))")}
    for model in ${EB_MODELS//,/ }; do
        left=$(( $(remaining) - ${EB_EVAL_RESERVE_S:-90} ))
        if (( left < 20 )); then stamp "equal-budget: $model skipped, no time left"; continue; fi
        stamp "equal-budget ($EB_PLAN): train $model (at most $left s)"
        timeout "$left" $PY "${EB[@]}" --only "$model" --train-only || echo "$model did not finish (status $?)"
        save_eb_work
    done
    stamp "equal-budget ($EB_PLAN): evaluate the models that finished training"
    timeout "$(remaining)" $PY "${EB[@]}" --only "$EB_MODELS" --finished-only \
        || echo "equal-budget evaluation failed, found no finished model, or ran out of time"
    save_eb_work
fi

stamp "done"
