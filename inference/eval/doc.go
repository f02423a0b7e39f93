// Package eval measures detection quality the way the paper does (METHOD.md 4):
// exact pixel-level AUROC and AUPR over all test pixels, Dice at calibrated
// thresholds, timing and memory; and at the level the node reports, findings
// (issue 19): painted lesions overlapped by a finding, false findings, and
// healthy series with any finding. It draws ROC/PR curves and training curves
// as PNG (gonum/plot) and writes a JSON summary and a one-screen table. It
// scores through the inference package's Engine and Scorer and holds the
// evaluation's scorer and threshold policy (Options.Configure); it does not
// fit models.
package eval
