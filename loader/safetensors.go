package loader

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxSafetensorsHeader is the largest safetensors JSON header accepted (the
// limit of the reference Rust implementation). Real headers are well under
// 1 MB.
const MaxSafetensorsHeader = 100 << 20

// Safetensors is an opened .safetensors file. Its tensors' Data alias the
// file's memory map (read-only) until Close.
type Safetensors struct {
	name    string
	data    []byte
	unmap   func() error
	tensors map[string]Tensor
	names   []string
	meta    map[string]string
}

// OpenSafetensors memory-maps and parses a .safetensors file.
func OpenSafetensors(path string) (*Safetensors, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	s, err := ParseSafetensors(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	s.unmap = unmap
	return s, nil
}

// ParseSafetensors parses an in-memory .safetensors file; name is used in
// errors. The tensors' Data alias data. Only safetensors dtypes are
// accepted: a header naming dalle2's Q8_0 is refused.
func ParseSafetensors(data []byte, name string) (*Safetensors, error) {
	fail := func(format string, args ...any) (*Safetensors, error) {
		return nil, fmt.Errorf("loader: %s: "+format, append([]any{name}, args...)...)
	}
	if len(data) < 8 {
		return fail("file of %d bytes too short for a safetensors header", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxSafetensorsHeader {
		return fail("header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxSafetensorsHeader)
	}
	if n > uint64(len(data)-8) {
		return fail("header length %d beyond file size %d", n, len(data))
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	if t := bytes.TrimLeft(header, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fail("header is not a JSON object")
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(header, &entries); err != nil {
		return fail("header: %v", err)
	}
	s := &Safetensors{name: name, data: data, tensors: make(map[string]Tensor, len(entries))}
	for key, raw := range entries {
		if key == "__metadata__" {
			if err := json.Unmarshal(raw, &s.meta); err != nil {
				return fail("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		t, err := parseSafetensorsEntry(key, raw, body)
		if err != nil {
			return fail("tensor %q: %v", key, err)
		}
		s.tensors[key] = t
		s.names = append(s.names, key)
	}
	slices.Sort(s.names)
	return s, nil
}

func parseSafetensorsEntry(key string, raw json.RawMessage, body []byte) (Tensor, error) {
	var e struct {
		DType   *string  `json:"dtype"`
		Shape   *[]int64 `json:"shape"`
		Offsets *[]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return Tensor{}, err
	}
	if e.DType == nil || e.Shape == nil || e.Offsets == nil {
		return Tensor{}, errors.New(`entry needs "dtype", "shape" and "data_offsets"`)
	}
	dt, err := ParseDType(*e.DType)
	if err != nil {
		return Tensor{}, err
	}
	if dt == Q8_0 {
		// dalle2's own block format: no safetensors writer produces it.
		return Tensor{}, fmt.Errorf("dtype %q is not a safetensors dtype", *e.DType)
	}
	_, nbytes, err := byteSize(*e.Shape, dt)
	if err != nil {
		return Tensor{}, err
	}
	off := *e.Offsets
	if len(off) != 2 {
		return Tensor{}, fmt.Errorf("data_offsets has %d values, want 2", len(off))
	}
	begin, end := off[0], off[1]
	switch {
	case begin < 0 || end < begin:
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] out of order", begin, end)
	case end > int64(len(body)):
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] beyond data size %d", begin, end, len(body))
	case end-begin != nbytes:
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] hold %d bytes, %s %v needs %d", begin, end, end-begin, dt, *e.Shape, nbytes)
	}
	return Tensor{Name: key, DType: dt, Shape: intShape(*e.Shape), Data: body[begin:end:end]}, nil
}

// Names lists the tensor names, sorted.
func (s *Safetensors) Names() []string { return slices.Clone(s.names) }

// Tensor returns the named tensor. Its Data aliases the file: read-only.
func (s *Safetensors) Tensor(name string) (Tensor, error) {
	if s.tensors == nil {
		return Tensor{}, fmt.Errorf("loader: %s: file is closed", s.name)
	}
	t, ok := s.tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("loader: %s: no tensor %q", s.name, name)
	}
	t.Shape = slices.Clone(t.Shape)
	return t, nil
}

// Metadata returns the __metadata__ map (nil if the file has none).
func (s *Safetensors) Metadata() map[string]string { return s.meta }

// Close unmaps the file. Tensors read from it must not be used afterwards.
func (s *Safetensors) Close() error {
	s.tensors = nil
	s.data = nil
	if s.unmap == nil {
		return nil
	}
	u := s.unmap
	s.unmap = nil
	if err := u(); err != nil {
		return fmt.Errorf("loader: %s: %w", s.name, err)
	}
	return nil
}

// WriteSafetensors writes tensors and optional metadata to path atomically
// (a temporary file in the same directory, fsynced and renamed). Tensors are
// stored sorted by name; the header is padded with spaces to a multiple of 8
// bytes so that data begins 8-byte aligned. Q8_0 tensors are refused
// (safetensors has no such dtype).
func WriteSafetensors(path string, tensors []Tensor, meta map[string]string) error {
	sorted := slices.Clone(tensors)
	slices.SortFunc(sorted, func(a, b Tensor) int { return strings.Compare(a.Name, b.Name) })
	var h bytes.Buffer
	h.WriteByte('{')
	if len(meta) > 0 {
		m, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("loader: %s: metadata: %w", path, err)
		}
		h.WriteString(`"__metadata__":`)
		h.Write(m)
	}
	var off int64
	for i, t := range sorted {
		if t.Name == "" || t.Name == "__metadata__" || !utf8.ValidString(t.Name) {
			return fmt.Errorf("loader: %s: invalid tensor name %q", path, t.Name)
		}
		if i > 0 && sorted[i-1].Name == t.Name {
			return fmt.Errorf("loader: %s: duplicate tensor %q", path, t.Name)
		}
		if err := checkTensorData(t); err != nil {
			return fmt.Errorf("loader: %s: %w", path, err)
		}
		if t.DType == Q8_0 {
			return fmt.Errorf("loader: %s: tensor %q: safetensors cannot store %s", path, t.Name, t.DType)
		}
		if h.Len() > 1 {
			h.WriteByte(',')
		}
		k, _ := json.Marshal(t.Name)
		h.Write(k)
		fmt.Fprintf(&h, `:{"dtype":"%s","shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}

	a, err := createAtomic(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(a, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(h.Len()))
	bw.Write(n[:])
	bw.Write(h.Bytes())
	for _, t := range sorted {
		bw.Write(t.Data)
	}
	if err := bw.Flush(); err != nil {
		a.abort()
		return fmt.Errorf("loader: %s: %w", path, err)
	}
	return a.commit()
}
