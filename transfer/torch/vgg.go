package torch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/pickle"
	"github.com/sugarme/gotch/ts"

	"github.com/nst-project/nst/transfer"
)

// vggConv is one 3x3 convolution of VGG19's feature extractor, followed by a ReLU and, at the
// end of each block, a 2x2 max pool.
type vggConv struct {
	name      string // conv1_1 ...
	index     int    // torchvision's features.N index
	poolAfter bool
	w, b      *ts.Tensor
}

// vggLayout is torchvision's vgg19 "features": the index of each conv in the Sequential, in
// the order of transfer.LayerNames, and the standard channel widths.
var (
	vggIndex  = []int{0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34}
	vggWidth  = []int64{64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512}
	vggPooled = map[int]bool{2: true, 7: true, 16: true, 25: true, 34: true} // features index of the conv before each pool
)

// vgg holds the frozen conv weights, shallowest first. Only a prefix of VGG19's convs may be
// present (tests use truncated, narrow checkpoints); forward runs no deeper than asked.
type vgg struct {
	convs []vggConv
	// bf16: the weights are bfloat16; forward casts its input to bfloat16 and returns float32
	// features.
	bf16 bool
	// channelsLast: the weights are in channels-last memory order and forward puts its input in
	// that order too, so oneDNN (and cuDNN) run their native NHWC kernels instead of reordering
	// every activation to and from NCHW. The values are the same; sums may round differently.
	channelsLast bool
}

// toChannelsLast converts m's weights to channels-last memory order in place.
func (m *vgg) toChannelsLast() error {
	for i := range m.convs {
		var s scope
		w := s.take(s.channelsLast(m.convs[i].w))
		if !s.ok() {
			s.drop()
			return fmt.Errorf("%s to channels-last: %w", m.convs[i].name, s.err)
		}
		s.drop()
		_ = m.convs[i].w.Drop()
		m.convs[i].w = w
	}
	m.channelsLast = true
	return nil
}

// toBF16 returns a copy of m with bfloat16 weights.
func (m *vgg) toBF16() (*vgg, error) {
	var s scope
	out := &vgg{bf16: true, channelsLast: m.channelsLast} // Totype preserves the memory format
	for _, c := range m.convs {
		c2 := c
		c2.w = s.add(c.w.Totype(gotch.BFloat16, false))
		c2.b = s.add(c.b.Totype(gotch.BFloat16, false))
		out.convs = append(out.convs, c2)
	}
	if !s.ok() {
		s.drop()
		return nil, s.err
	}
	return out, nil
}

// drop frees the weights.
func (m *vgg) drop() {
	for _, c := range m.convs {
		_ = c.w.Drop()
		_ = c.b.Drop()
	}
	m.convs = nil
}

// depth returns the position (in transfer.LayerNames) of the deepest layer among names.
func depth(names []string) int {
	d := -1
	for _, n := range names {
		if i := transfer.LayerIndex(n); i > d {
			d = i
		}
	}
	return d
}

// forward runs x (B,3,H,W) through the convs up to the deepest wanted layer and returns the
// post-ReLU activation of each wanted layer, keyed by name. The seed runs torchvision's VGG19,
// whose ReLUs are in place: the conv outputs it stores are overwritten by the ReLU that follows,
// so its "conv4_2" features are post-ReLU; this does the same explicitly. Activations not
// returned are freed; the returned ones belong to s.
func (m *vgg) forward(s *scope, x *ts.Tensor, want map[string]bool) map[string]*ts.Tensor {
	out := make(map[string]*ts.Tensor, len(want))
	deepest := -1
	for n := range want {
		if i := transfer.LayerIndex(n); i > deepest {
			deepest = i
		}
	}
	if deepest >= len(m.convs) {
		s.err = fmt.Errorf("%w: layer %s is deeper than the weights, which end at %s",
			transfer.ErrBadInput, transfer.LayerNames()[deepest], m.convs[len(m.convs)-1].name)
		return nil
	}
	h := x
	var tmp scope // intermediates not returned
	defer tmp.drop()
	if m.bf16 {
		h = tmp.add(x.Totype(gotch.BFloat16, false))
	}
	if m.channelsLast {
		h = tmp.channelsLast(h)
	}
	for i := 0; i <= deepest && s.ok() && tmp.ok(); i++ {
		c := m.convs[i]
		conv, err := ts.Conv2d(h, c.w, c.b, []int64{1, 1}, []int64{1, 1}, []int64{1, 1}, 1)
		if err != nil {
			s.err = torchErr(c.name, err)
			break
		}
		// In place, as torchvision's VGG19 does: no second buffer per layer to allocate and
		// fill. Autograd allows it, as the convolution keeps its input, not its output.
		act := conv
		if err := reluInPlace(conv); err != nil {
			_ = conv.Drop()
			s.err = torchErr(c.name+" relu", err)
			break
		}
		switch {
		case want[c.name] && m.bf16:
			tmp.add(act, nil)
			out[c.name] = s.add(act.Totype(gotch.Float, false))
		case want[c.name]:
			s.add(act, nil)
			out[c.name] = act
		default:
			tmp.add(act, nil)
		}
		h = act
		if c.poolAfter && i < deepest {
			p, err := h.MaxPool2d([]int64{2, 2}, []int64{2, 2}, []int64{0, 0}, []int64{1, 1}, false, false)
			if err != nil {
				s.err = torchErr(c.name+" pool", err)
				break
			}
			tmp.add(p, nil)
			h = p
		}
	}
	if s.ok() && !tmp.ok() {
		s.err = tmp.err
	}
	if !s.ok() {
		return nil
	}
	return out
}

// featureKey matches torchvision's state-dict names for the feature extractor.
var featureKey = regexp.MustCompile(`^features\.(\d+)\.(weight|bias)$`)

// WeightsHelp says where real VGG19 weights come from; errors about missing weights end with it.
const WeightsHelp = "nst needs torchvision's ImageNet VGG19 weights, vgg19-dcbb9e9d.pth (548 MB, " +
	"sha256 dcbb9e9d...; from https://download.pytorch.org/models/vgg19-dcbb9e9d.pth, or " +
	"torchvision.models.vgg19(weights='IMAGENET1K_V1') in ~/.cache/torch/hub/checkpoints/). " +
	"Pass its path with --weights (a bucket URL in a manifest's spec.model.weights), or " +
	"--random-weights for a demo whose output shows no real style"

// loadVGG reads a torchvision VGG19 state dict (zip or legacy .pth) with gotch's pickle reader
// and returns its feature convs on dev. Keys outside "features." (the classifier) are ignored;
// the convs must form a prefix of VGG19's, each [out, in, 3, 3] with a bias [out] and in equal to
// the previous out. Channel counts come from the file, so narrow test checkpoints load too. If
// wantSHA is not empty the file's sha256 must match it. It returns the file's sha256.
func loadVGG(path, wantSHA string, dev gotch.Device) (m *vgg, digest string, err error) {
	if path == "" {
		return nil, "", fmt.Errorf("no VGG19 weights given: %s", WeightsHelp)
	}
	digest, err = fileSHA256(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("VGG19 weights %s do not exist: %s", path, WeightsHelp)
		}
		return nil, "", fmt.Errorf("read VGG19 weights: %w", err)
	}
	if wantSHA != "" && !strings.EqualFold(wantSHA, digest) {
		return nil, "", fmt.Errorf("VGG19 weights %s have sha256 %s, want %s", path, digest, strings.ToLower(wantSHA))
	}
	raw, err := readStateDict(path)
	if err != nil {
		return nil, "", fmt.Errorf("VGG19 weights %s: %w", path, err)
	}
	m, err = buildVGG(raw, dev)
	if err != nil {
		return nil, "", fmt.Errorf("VGG19 weights %s: %w", path, err)
	}
	return m, digest, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// rawTensor is one state-dict entry as host data.
type rawTensor struct {
	shape []int64
	data  []float32
}

// readStateDict unpickles a .pth file into host float32 tensors. gotch's own pickle.Decode
// builds tensors with Must* calls (log.Fatal on a bad file) and its legacy-tar path panics, so
// this walks the unpickled objects itself and turns any panic into an error.
func readStateDict(path string) (out map[string]rawTensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("not a readable PyTorch checkpoint: %v", r)
		}
	}()
	obj, err := pickle.LoadWithUnpickler(path, func(r io.Reader) pickle.Unpickler { return pickle.NewUnpickler(r) })
	if err != nil {
		return nil, fmt.Errorf("not a readable PyTorch checkpoint: %s", firstLine(err.Error()))
	}
	entries := map[string]any{}
	switch d := obj.(type) {
	case *pickle.Dict:
		for _, e := range *d {
			if k, ok := e.Key.(string); ok {
				entries[k] = e.Value
			}
		}
	case *pickle.OrderedDict:
		for k, e := range d.Map {
			if ks, ok := k.(string); ok {
				entries[ks] = e.Value
			}
		}
	default:
		return nil, fmt.Errorf("holds a %T, not a state dict", obj)
	}
	out = make(map[string]rawTensor, len(entries))
	for k, v := range entries {
		if !strings.HasPrefix(k, "features.") {
			continue // classifier.* and anything else a full VGG19 file carries
		}
		st, ok := v.(*pickle.StorageTensor)
		if !ok {
			return nil, fmt.Errorf("%s: holds a %T, not a tensor", k, v)
		}
		rt, err := hostTensor(st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = rt
	}
	return out, nil
}

// hostTensor gathers a storage view (size, stride, offset) into a dense float32 slice.
func hostTensor(st *pickle.StorageTensor) (rawTensor, error) {
	var src []float64
	switch d := st.Source.GetData().(type) {
	case []float32:
		src = make([]float64, len(d))
		for i, v := range d {
			src[i] = float64(v)
		}
	case []float64:
		src = d
	default:
		return rawTensor{}, fmt.Errorf("has element type %v, want float32", reflect.TypeOf(d))
	}
	n := int64(1)
	for _, s := range st.Size {
		if s < 0 {
			return rawTensor{}, fmt.Errorf("negative size %v", st.Size)
		}
		n *= s
	}
	if len(st.Stride) != len(st.Size) {
		return rawTensor{}, fmt.Errorf("size %v and stride %v differ in rank", st.Size, st.Stride)
	}
	data := make([]float32, n)
	idx := make([]int64, len(st.Size))
	for i := int64(0); i < n; i++ {
		off := st.StorageOffset
		for d := range idx {
			off += idx[d] * st.Stride[d]
		}
		if off < 0 || off >= int64(len(src)) {
			return rawTensor{}, fmt.Errorf("view (size %v, stride %v, offset %d) reads outside its storage of %d values",
				st.Size, st.Stride, st.StorageOffset, len(src))
		}
		data[i] = float32(src[off])
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < st.Size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return rawTensor{shape: append([]int64(nil), st.Size...), data: data}, nil
}

// buildVGG checks a state dict against VGG19's layout and uploads its convs.
func buildVGG(raw map[string]rawTensor, dev gotch.Device) (*vgg, error) {
	var problems []string
	byIndex := map[int]bool{}
	for k := range raw {
		mm := featureKey.FindStringSubmatch(k)
		if mm == nil {
			problems = append(problems, fmt.Sprintf("unexpected key %q", k))
			continue
		}
		i, _ := strconv.Atoi(mm[1])
		if pos := indexPosition(i); pos < 0 {
			problems = append(problems, fmt.Sprintf("unexpected key %q (features.%d is not a VGG19 conv)", k, i))
			continue
		}
		byIndex[i] = true
	}
	// The convs present must be a prefix of VGG19's.
	n := 0
	for n < len(vggIndex) && byIndex[vggIndex[n]] {
		n++
	}
	for p := n; p < len(vggIndex); p++ {
		if byIndex[vggIndex[p]] {
			problems = append(problems, fmt.Sprintf("features.%d (%s) is present but features.%d (%s) is missing",
				vggIndex[p], transfer.LayerNames()[p], vggIndex[n], transfer.LayerNames()[n]))
			break
		}
	}
	if n == 0 && len(problems) == 0 {
		problems = append(problems, "no features.N.weight keys: this is not a torchvision VGG19 state dict")
	}
	m := &vgg{}
	in := int64(3)
	for p := 0; p < n && len(problems) == 0; p++ {
		idx := vggIndex[p]
		wk, bk := fmt.Sprintf("features.%d.weight", idx), fmt.Sprintf("features.%d.bias", idx)
		w, okW := raw[wk]
		b, okB := raw[bk]
		switch {
		case !okW:
			problems = append(problems, "missing key "+wk)
			continue
		case !okB:
			problems = append(problems, "missing key "+bk)
			continue
		}
		if len(w.shape) != 4 || w.shape[1] != in || w.shape[2] != 3 || w.shape[3] != 3 || w.shape[0] < 1 {
			problems = append(problems, fmt.Sprintf("%s has shape %v, want [out, %d, 3, 3]", wk, w.shape, in))
			continue
		}
		if len(b.shape) != 1 || b.shape[0] != w.shape[0] {
			problems = append(problems, fmt.Sprintf("%s has shape %v, want [%d]", bk, b.shape, w.shape[0]))
			continue
		}
		for _, v := range w.data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				problems = append(problems, wk+" holds NaN or Inf values")
				break
			}
		}
		m.convs = append(m.convs, vggConv{name: transfer.LayerNames()[p], index: idx, poolAfter: vggPooled[idx]})
		in = w.shape[0]
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	var s scope
	for p := range m.convs {
		idx := vggIndex[p]
		w := raw[fmt.Sprintf("features.%d.weight", idx)]
		b := raw[fmt.Sprintf("features.%d.bias", idx)]
		m.convs[p].w = s.fromFloat32(w.data, dev, w.shape...)
		m.convs[p].b = s.fromFloat32(b.data, dev, b.shape...)
	}
	if !s.ok() {
		s.drop()
		return nil, s.err
	}
	return m, nil
}

func indexPosition(i int) int {
	for p, v := range vggIndex {
		if v == i {
			return p
		}
	}
	return -1
}

// randomVGG makes VGG19's feature convs (full widths) with Kaiming-normal weights (fan_out,
// as torchvision initialises VGG) from a seeded generator: repeatable, and useless for real
// stylisation, which needs ImageNet-trained filters.
func randomVGG(seed int64, layers int, dev gotch.Device) (*vgg, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e7374)) // "nst"
	m := &vgg{}
	var s scope
	in := int64(3)
	for p := 0; p < layers; p++ {
		out := vggWidth[p]
		std := math.Sqrt(2 / float64(out*9))
		w := make([]float32, out*in*9)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * std)
		}
		b := make([]float32, out)
		m.convs = append(m.convs, vggConv{
			name: transfer.LayerNames()[p], index: vggIndex[p], poolAfter: vggPooled[vggIndex[p]],
			w: s.fromFloat32(w, dev, out, in, 3, 3),
			b: s.fromFloat32(b, dev, out),
		})
		in = out
	}
	if !s.ok() {
		s.drop()
		return nil, s.err
	}
	return m, nil
}
