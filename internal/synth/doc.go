// Package synth makes realistic, labelled test series: axial slices resampled
// from a real T1 brain volume (NIfTI-1, e.g. mricron-data's ch2better) or, when
// that file is absent, from an analytic head phantom, written as DICOM Part-10
// MR or CT files with correct geometry, optional synthetic lesions and their
// ground-truth masks (PNG and .npy) plus a JSON manifest.
//
// Everything is derived from a seed: the same Options give byte-identical
// files, different seeds give different (shifted, scaled, noisy) anatomy and
// different UIDs. It is a test and evaluation tool; it never touches the
// network and does not read DICOM. It imports no stage (ingest, inference,
// output), so the tests of every stage can use it.
package synth
