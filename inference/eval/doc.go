// Package eval measures detection quality the way the paper does (METHOD.md 4):
// exact pixel-level AUROC and AUPR over all test pixels, Dice at calibrated
// thresholds, timing and memory; it draws ROC/PR curves and training curves as
// PNG (gonum/plot) and writes a JSON summary and a one-screen table. It scores
// through the inference package's Engine and Scorer; it does not fit models.
package eval
