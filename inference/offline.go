package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"anomalynode/internal/dcm"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"anomalynode/inference/pixel"
	"anomalynode/internal/npy"
	"anomalynode/internal/par"
)

// Series is a set of DICOM files sharing a SeriesInstanceUID.
type Series struct {
	// UID is the SeriesInstanceUID.
	UID string
	// StudyUID is the StudyInstanceUID.
	StudyUID string
	// Modality is the series modality.
	Modality string
	// Files are the instance paths, by InstanceNumber then name.
	Files []string
}

// ScanProblem is a file under the scanned folder that is not a usable DICOM
// instance.
type ScanProblem struct {
	// Path is the file.
	Path string
	// Err says why it was skipped.
	Err error
}

// ScanSeries walks dir, reads every file's header (no pixel data) and groups
// the DICOM instances by SeriesInstanceUID. Files without the DICM prefix are
// counted in notDICOM; DICOM files that cannot be used (corrupt, no series
// UID, not an image) are returned as problems, not errors.
func ScanSeries(dir string) (series []*Series, problems []ScanProblem, notDICOM int, err error) {
	type inst struct {
		path string
		num  int
	}
	bySeries := map[string]*Series{}
	insts := map[string][]inst{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		ds, err := parseHeader(p)
		if errors.Is(err, dcm.ErrNotDICOM) {
			notDICOM++
			return nil
		}
		if err != nil {
			problems = append(problems, ScanProblem{Path: p, Err: err})
			return nil
		}
		uid := dcm.String(&ds, tag.SeriesInstanceUID)
		if uid == "" {
			problems = append(problems, ScanProblem{Path: p, Err: fmt.Errorf("no SeriesInstanceUID")})
			return nil
		}
		if _, err := ds.FindElementByTag(tag.Rows); err != nil {
			problems = append(problems, ScanProblem{Path: p, Err: fmt.Errorf("not an image (no Rows)")})
			return nil
		}
		s := bySeries[uid]
		if s == nil {
			s = &Series{UID: uid, StudyUID: dcm.String(&ds, tag.StudyInstanceUID), Modality: dcm.String(&ds, tag.Modality)}
			bySeries[uid] = s
		}
		n, _ := strconv.Atoi(dcm.String(&ds, tag.InstanceNumber))
		insts[uid] = append(insts[uid], inst{p, n})
		return nil
	})
	if err != nil {
		return nil, problems, notDICOM, fmt.Errorf("inference: scan %s: %w", dir, err)
	}
	out := make([]*Series, 0, len(bySeries))
	for uid, s := range bySeries {
		list := insts[uid]
		sort.Slice(list, func(i, j int) bool {
			if list[i].num != list[j].num {
				return list[i].num < list[j].num
			}
			return list[i].path < list[j].path
		})
		for _, in := range list {
			s.Files = append(s.Files, in.path)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, problems, notDICOM, nil
}

func parseHeader(path string) (dicom.Dataset, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return dicom.Dataset{}, err
	}
	return ParseHeader(data)
}

// ParseHeader parses the attributes of untrusted Part-10 bytes, pixel data
// skipped, through the guarded walk the decoder uses: a declared length past
// the end is refused (ErrInvalidDICOM) before the parser can allocate it, and
// a parser panic becomes an error.
func ParseHeader(data []byte) (dicom.Dataset, error) {
	return pixel.Parse(data, dicom.SkipPixelData())
}

// SeriesSummary is the JSON summary 'anomalynode score' writes per series.
type SeriesSummary struct {
	// SeriesInstanceUID identifies the series.
	SeriesInstanceUID string `json:"series_instance_uid"`
	// StudyInstanceUID is the series' study.
	StudyInstanceUID string `json:"study_instance_uid"`
	// Modality of the series.
	Modality string `json:"modality"`
	// Model is the model file used.
	Model string `json:"model"`
	// Threshold is the pixel threshold of the masks.
	Threshold float32 `json:"threshold"`
	// FPR is the false-positive rate the threshold was calibrated for.
	FPR string `json:"fpr"`
	// Max is the largest pixel score of the series.
	Max float32 `json:"max"`
	// TopMean is the largest slice TopMean of the series.
	TopMean float32 `json:"top_mean"`
	// Slices lists every slice (and every file that failed).
	Slices []SliceSummary `json:"slices"`
	// Errors counts failed files/slices.
	Errors int `json:"errors"`
	// MeanMS is the mean per-slice time of each stage in milliseconds.
	MeanMS StageMS `json:"mean_ms"`
	// TotalMS is the series' summed stage time in milliseconds.
	TotalMS StageMS `json:"total_ms"`
	// WallMS is the wall-clock time of the series in milliseconds.
	WallMS float64 `json:"wall_ms"`
	// PhaseMS splits WallMS: the engine (decode to masks), writing the score
	// maps, and Finish (the DICOM outputs).
	PhaseMS PhaseMS `json:"phase_ms"`
	// FindingCalibration says whether the model has a finding calibration;
	// without one, Findings is empty and the masks are per pixel.
	FindingCalibration bool `json:"finding_calibration"`
	// Stacks is the number of stacks the series was split into (one per
	// orientation, frame of reference and size).
	Stacks int `json:"stacks"`
	// FindingCount is len(Findings), for a quick look.
	FindingCount int `json:"finding_count"`
	// Findings lists every finding of every stack.
	Findings []FindingSummary `json:"findings"`
}

// FindingSummary is one finding in the summary.
type FindingSummary struct {
	// Stack is the 0-based stack of the series it lies in.
	Stack int `json:"stack"`
	// ID numbers the findings of a stack by peak score, highest first.
	ID int `json:"id"`
	// Segment is its segment number in the stack's SEG.
	Segment int `json:"segment"`
	// Voxels and VolumeMM3 are its size.
	Voxels int `json:"voxels"`
	// VolumeMM3 is its volume in mm3.
	VolumeMM3 float64 `json:"volume_mm3"`
	// Peak and Mean are its highest and mean score.
	Peak float32 `json:"peak"`
	// Mean is its mean score.
	Mean float32 `json:"mean"`
	// Centroid is its centre in patient coordinates (mm).
	Centroid [3]float64 `json:"centroid_mm"`
	// FirstSlice and LastSlice are its 0-based slice range along the normal.
	FirstSlice int `json:"first_slice"`
	// LastSlice is the last slice it covers.
	LastSlice int `json:"last_slice"`
}

// StageMS is Timings in milliseconds.
type StageMS struct {
	// Decode, Preprocess, Model, Score and Upsample are the stages; Total their sum.
	Decode     float64 `json:"decode"`
	Preprocess float64 `json:"preprocess"`
	Model      float64 `json:"model"`
	Score      float64 `json:"score"`
	Upsample   float64 `json:"upsample"`
	Total      float64 `json:"total"`
}

func stageMS(t Timings, div int) StageMS {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(max(div, 1)) }
	return StageMS{ms(t.Decode), ms(t.Preprocess), ms(t.Model), ms(t.Score), ms(t.Upsample), ms(t.Total())}
}

// SliceSummary is one slice's line in the summary.
type SliceSummary struct {
	// File is the source path.
	File string `json:"file"`
	// SOPInstanceUID of the source.
	SOPInstanceUID string `json:"sop_instance_uid,omitempty"`
	// InstanceNumber of the source.
	InstanceNumber int `json:"instance_number,omitempty"`
	// Frame is the frame index in a multi-frame instance.
	Frame int `json:"frame"`
	// Rows and Cols are the map size.
	Rows int `json:"rows,omitempty"`
	// Cols is the number of columns.
	Cols int `json:"cols,omitempty"`
	// Map is the .npy score map, relative to the summary.
	Map string `json:"map,omitempty"`
	// Max and TopMean are the slice scores.
	Max float32 `json:"max"`
	// TopMean is the mean of the top pixel scores.
	TopMean float32 `json:"top_mean"`
	// MaskedPixels counts pixels above the threshold.
	MaskedPixels int `json:"masked_pixels"`
	// VOI is the VOI policy applied.
	VOI string `json:"voi,omitempty"`
	// MS are the stage times in milliseconds.
	MS StageMS `json:"ms"`
	// Error says why the slice has no map.
	Error string `json:"error,omitempty"`
	// Quarantine marks errors about the data itself, which the node would
	// quarantine (unsupported or invalid), as opposed to e.g. I/O errors.
	Quarantine bool `json:"quarantine,omitempty"`
}

// OfflineOptions configures ScoreSeries.
type OfflineOptions struct {
	// Out is the output root; each series gets OUT/<SeriesInstanceUID>/.
	Out string
	// Model and FPR are recorded in the summary.
	Model string
	// FPR is the threshold's false-positive-rate key.
	FPR string
	// Threshold is recorded in the summary.
	Threshold float32
	// Chunk is the number of files handed to the engine at once (bounds memory).
	Chunk int
	// OnSlice, when set, is called after each slice (or failed file).
	OnSlice func()
	// OnResult, when set, is handed each scored slice (after its map is written).
	OnResult func(r *Result)
	// Finish, when set, completes the summary (the series' findings) before
	// it is written.
	Finish func(sum *SeriesSummary) error
}

// mapName is the score map file of a slice: its SOP Instance UID, and the
// frame number for a frame of a multi-frame instance.
func mapName(sl *pixel.Slice) string {
	name := dcm.FileName(sl.SOPInstanceUID)
	if sl.Frames > 1 {
		name += fmt.Sprintf("_f%04d", sl.Frame)
	}
	return name + ".npy"
}

// writeMaps writes the score map of every scored result to dir, one
// goroutine per core (a 512x512 map is a megabyte; a series is hundreds).
func writeMaps(dir string, results []*Result) error {
	errs := make([]error, len(results))
	par.ForEach(len(results), func(i int) {
		if r := results[i]; r.Err == nil && r.Slice != nil {
			errs[i] = npy.Write(filepath.Join(dir, mapName(r.Slice)), &npy.Array{Shape: []int{r.Slice.Rows, r.Slice.Cols}, F32: r.Map})
		}
	})
	return errors.Join(errs...)
}

// PhaseMS are the wall-clock phases of scoring a series, in milliseconds.
type PhaseMS struct {
	Engine  float64 `json:"engine"`
	Maps    float64 `json:"maps"`
	Outputs float64 `json:"outputs"`
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

// ScoreSeries scores every file of a series with the engine and writes one
// float32 .npy score map per slice and summary.json to OUT/<SeriesInstanceUID>/.
func ScoreSeries(ctx context.Context, e *Engine, s *Series, o OfflineOptions) (*SeriesSummary, error) {
	start := time.Now()
	dir := filepath.Join(o.Out, dcm.FileName(s.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("inference: score: %w", err)
	}
	sum := &SeriesSummary{SeriesInstanceUID: s.UID, StudyInstanceUID: s.StudyUID, Modality: s.Modality,
		Model: o.Model, Threshold: o.Threshold, FPR: o.FPR, Slices: []SliceSummary{}, Findings: []FindingSummary{}}
	chunk := o.Chunk
	if chunk < 1 {
		chunk = 8
	}
	var total Timings
	ok := 0
	for lo := 0; lo < len(s.Files); lo += chunk {
		files := s.Files[lo:min(lo+chunk, len(s.Files))]
		inputs := make([]Input, len(files))
		for i, f := range files {
			inputs[i] = Input{Path: f}
		}
		t0 := time.Now()
		results, err := e.Process(ctx, inputs)
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		sum.PhaseMS.Engine += float64(t1.Sub(t0)) / float64(time.Millisecond)
		if err := writeMaps(dir, results); err != nil {
			return nil, err
		}
		sum.PhaseMS.Maps += msSince(t1)
		for _, r := range results {
			ss := SliceSummary{File: r.Source}
			if r.Slice != nil {
				ss.SOPInstanceUID, ss.InstanceNumber, ss.Frame, ss.Rows, ss.Cols = r.Slice.SOPInstanceUID, r.Slice.InstanceNumber, r.Slice.Frame, r.Slice.Rows, r.Slice.Cols
			}
			if r.Err != nil {
				ss.Error = r.Err.Error()
				ss.Quarantine = pixel.Quarantinable(r.Err)
				sum.Errors++
			} else {
				name := mapName(r.Slice)
				ss.Map, ss.Max, ss.TopMean, ss.MaskedPixels, ss.VOI = name, r.Max, r.TopMean, r.MaskedPixels, r.VOI
				ss.MS = stageMS(r.Timings, 1)
				sum.Max, sum.TopMean = max(sum.Max, r.Max), max(sum.TopMean, r.TopMean)
				total = total.Add(r.Timings)
				ok++
				if o.OnResult != nil {
					o.OnResult(r)
				}
			}
			sum.Slices = append(sum.Slices, ss)
			if o.OnSlice != nil {
				o.OnSlice()
			}
		}
	}
	sum.TotalMS, sum.MeanMS = stageMS(total, 1), stageMS(total, ok)
	t2 := time.Now()
	if o.Finish != nil {
		if err := o.Finish(sum); err != nil {
			return nil, err
		}
	}
	sum.PhaseMS.Outputs = msSince(t2)
	sum.FindingCount = len(sum.Findings)
	sum.WallMS = msSince(start)
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("inference: score: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("inference: score: %w", err)
	}
	return sum, nil
}
