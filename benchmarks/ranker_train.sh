#!/usr/bin/env bash
# Train the predictors benchmarks/ranker_sim.py compares, for each LLM's lengths, each
# max_tokens cap (0: none) and each training seed, into $OUT/<kind>-<llm>-cap<N>-s<seed>:
#   pars       the mission's ranker: PARS's pairwise margin loss on the expected cost, a tail
#              head (P >= 2k tokens), the prompt's token count as input, a 5-fold cross-fitted
#              ensemble, early stopping and the tail mix chosen on the batch SJF gap of
#              out-of-fold prompts (the defaults of `llmsim train --predictor pars`), on
#              MiniLM's token embeddings alone (layers=0: a new prompt scores in about a
#              millisecond on a CPU; deeper encoders did no better on validation prompts)
#   pars-v1    PARS as it shipped before: mean length, one head, held-out tau
#   lgbm       LightGBM lambdarank as it shipped: mean length, held-out tau
#   lgbm-cost  LightGBM on the expected cost, trees chosen on the batch SJF gap
# and variants of pars, to say what each ingredient buys (not in the default KINDS;
# docs/predictors.md, "Variants"):
#   pars-1     pars with one member instead of the 5-fold ensemble
#   pars-ft    pars-1 with MiniLM's token embeddings fine-tuned too, 6 epochs (about 40
#              CPU-minutes on one thread, against 4 for the head alone)
#   pars-mm    pars-1 trained on all 13 CASTILLO LLMs' lengths, the LLM an input of the head
#   pars-mm5   pars-mm as a 5-fold ensemble: pars's recipe on all 13 LLMs' lengths
# Head-only (cached MiniLM embeddings). Nothing here looks at the test prompts but the
# final report `llmsim train` prints. Torch runs on one thread (a small head gains nothing
# from more, and on a shared machine loses much). KINDS picks some of them.
#   bash benchmarks/ranker_train.sh [CASTILLO_DIR] [OUT] [SEEDS] [CAPS]
set -euo pipefail
DATA=${1:-../shared/data/castillo}
OUT=${2:-llmsim-out/study}
SEEDS=${3:-"0 1 2"}
CAPS=${4:-"0 4096"}
LLMSIM=${LLMSIM:-.venv/bin/llmsim}
KINDS=${KINDS:-"pars pars-v1 lgbm lgbm-cost"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for llm in Llama-3.1-8B-Instruct Qwen2.5-7B-Instruct-1M; do
  for cap in $CAPS; do
    for seed in $SEEDS; do
      common=(--data "$DATA" --model "$llm" --seed "$seed" --set "cap=$cap" --force)
      run() {  # name, then llmsim train options
        local name=$1; shift
        [[ " $KINDS " == *" $name "* ]] || return 0
        [ -f "$OUT/$name-$llm-cap$cap-s$seed/card.json" ] && [ -z "${RETRAIN:-}" ] && return 0
        "$LLMSIM" train "${common[@]}" --out "$OUT/$name-$llm-cap$cap-s$seed" "$@" \
          > "$OUT/$name-$llm-cap$cap-s$seed.log" 2>&1
        tail -n 1 "$OUT/$name-$llm-cap$cap-s$seed.log"
      }
      run pars --predictor pars --set layers=0
      run pars-v1 --predictor pars --set target=mean_length --set select=tau \
        --set tail_threshold=0 --set prompt_feature=false --set folds=1
      run lgbm --predictor lgbm
      run pars-1 --predictor pars --set layers=0 --set folds=1
      run pars-ft --predictor pars --set layers=0 --set folds=1 --finetune --epochs 6
      run pars-mm --predictor pars --set layers=0 --set folds=1 --set models=all
      run pars-mm5 --predictor pars --set layers=0 --set models=all
      run lgbm-cost --predictor lgbm --set target=cost --set select=batch_gap
    done
  done
done
