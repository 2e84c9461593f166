#!/usr/bin/env bash
# The ranker study of docs/predictors.md: 16 settings x 10 replicates, the predictors that
# benchmarks/ranker_train.sh trained (PREDICTORS), figures into OUT (one JSON per setting;
# an interrupted study resumes), then the table and plot; then the variants of pars and
# starvation prevention's threshold on one setting. About an hour on 2 cores.
#   bash benchmarks/ranker_study.sh 2>&1 | tee docs/results/ranker-study/runs.log
set -euxo pipefail
PY=${PY:-.venv/bin/python}
PREDICTORS=${PREDICTORS:-llmsim-out/study}
OUT=${OUT:-docs/results/ranker-study}
export OMP_NUM_THREADS=1
run() { "$PY" benchmarks/ranker_sim.py --predictors "$PREDICTORS" --replicates 10 \
        --train-seeds 2 --out "$OUT" "$@"; }
run --llms Llama-3.1-8B-Instruct --loads 1.0 --caps 0,4096 --arrivals azure,poisson
run --llms Llama-3.1-8B-Instruct --loads 1.05 --caps 0,4096 --arrivals azure,poisson
# only seed 0 was trained for Qwen's lengths
run --llms Qwen2.5-7B-Instruct-1M --loads 1.0,1.05 --caps 0,4096 --arrivals azure,poisson \
  --train-seeds 1
"$PY" benchmarks/ranker_sim.py --out "$OUT" --report
# What the ingredients of pars buy, and what starvation prevention does to the tail, where
# pars falls short: Llama capped at 4096 (one training seed; the variants are trained by
# KINDS="pars-1 pars-ft pars-mm pars-mm5" bash benchmarks/ranker_train.sh)
VARIANTS=${VARIANTS:-docs/results/ranker-variants}
"$PY" benchmarks/ranker_sim.py --predictors "$PREDICTORS" --replicates 10 --train-seeds 1 \
  --out "$VARIANTS" --llms Llama-3.1-8B-Instruct --loads 1.0 --caps 4096 \
  --arrivals azure,poisson \
  --policies fcfs,sjf,ceiling,length,lgbm-cost,pars,pars+sp,pars-1,pars-ft,pars-mm,pars-mm5
"$PY" benchmarks/ranker_sim.py --out "$VARIANTS" --report
# Starvation prevention's threshold: the mean gain against the tail (same setting)
"$PY" benchmarks/ranker_sim.py --predictors "$PREDICTORS" --replicates 10 --train-seeds 1 \
  --out "${STARVATION:-docs/results/ranker-starvation}" --llms Llama-3.1-8B-Instruct \
  --loads 1.0 --caps 4096 --arrivals azure,poisson \
  --policies fcfs,sjf,length,pars,pars+sp,pars+sp300,pars+sp1000,pars+sp3000
"$PY" benchmarks/ranker_sim.py --out "${STARVATION:-docs/results/ranker-starvation}" --report
