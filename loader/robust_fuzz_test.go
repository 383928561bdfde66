package loader

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// checkOpened reads everything an opened weight file lists and checks what
// every successful read returns. It must never panic.
func checkOpened(t *testing.T, file *File, data []byte) {
	_ = file.Verify()
	for _, info := range file.Index() {
		tn, err := file.Tensor(info.Name)
		if err != nil {
			continue
		}
		if n, err := tn.DType.Bytes(tn.Shape); err != nil || int64(len(tn.Data)) != info.RawSize || len(tn.Data) != n {
			t.Fatalf("tensor %q: %d bytes, raw_size %d, %s %v (%v)", info.Name, len(tn.Data), info.RawSize, tn.DType, tn.Shape, err)
		}
		if info.Codec == CodecRaw && !within(tn.Data, data) {
			t.Fatalf("raw tensor %q: data outside the input", info.Name)
		}
		if checksum(tn.Data) != info.CRC32C {
			t.Fatalf("tensor %q returned with a wrong checksum", info.Name)
		}
	}
	for _, b := range file.Blobs() {
		got, err := file.Blob(b.Name)
		if err == nil && (int64(len(got)) != b.RawSize || checksum(got) != b.CRC32C) {
			t.Fatalf("blob %q: %d bytes, raw_size %d", b.Name, len(got), b.RawSize)
		}
	}
	for _, c := range file.Components() {
		s := file.Sub(c.Name)
		for _, key := range s.Names() {
			_, _ = s.Tensor(key)
		}
	}
	_ = file.Close()
}

// FuzzWeightIndex fuzzes the JSON index alone: the data area (preamble and
// regions) is that of a real small file, and the trailer and index checksum
// are made valid, so every input reaches index parsing and region checks
// (byte-level mutation of a whole file, as FuzzWeightFile does, mostly
// stops at the checksum). fresh picks a file from the current writer (with
// stored_crc32c) instead of the committed seed (written before that field).
func FuzzWeightIndex(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.d2")
	writeTinyD2(f, path)
	heads := [2][]byte{}
	for i, p := range []string{seedD2, path} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		off := binary.LittleEndian.Uint64(b[len(b)-TrailerSize:])
		heads[i] = b[:off:off]
		f.Add(b[off:len(b)-TrailerSize], i == 1)
	}
	f.Add([]byte(`{"version":1,"tensors":[{"name":"a/b","dtype":"F32","shape":[0],"codec":"raw","offset":64}]}`), false)
	f.Add([]byte(`{"version":1,"tensors":[{"name":"a/q","dtype":"Q8_0","shape":[1,32],"codec":"raw","offset":64,"size":34,"raw_size":34}]}`), false)
	f.Add([]byte(`{"version":1,"tensors":[{"name":"a/q","dtype":"Q8_0","shape":[2,3,4],"codec":"raw","offset":64,"size":0,"raw_size":0}]}`), false)
	f.Add([]byte(`{"version":1,"blobs":[{"name":"x","codec":"zstd","offset":64,"size":20,"raw_size":655360,"stored_crc32c":0}]}`), true)
	f.Fuzz(func(t *testing.T, index []byte, fresh bool) {
		head := heads[0]
		if fresh {
			head = heads[1]
		}
		data := withIndex(head, index)
		file, err := OpenBytes(data, "fuzz")
		if err != nil {
			return
		}
		checkOpened(t, file, data)
	})
}

// FuzzZstdRegion decodes arbitrary bytes as a zstd region claiming rawSize
// decoded bytes (reduced to what Open's ratio check lets through, and to
// 16 MiB to keep executions fast): no panic, and a success returns exactly
// rawSize bytes.
func FuzzZstdRegion(f *testing.F) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		f.Fatal(err)
	}
	text := bytes.Repeat([]byte("a photo of a red horse, "), 50)
	f.Add(enc.EncodeAll(text, nil), uint32(len(text)))
	f.Add(enc.EncodeAll(make([]byte, 4096), nil), uint32(4096))
	crcEnc, err := zstd.NewWriter(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(crcEnc.EncodeAll(text, nil), uint32(len(text)))
	var streamed bytes.Buffer
	w, err := zstd.NewWriter(&streamed)
	if err != nil {
		f.Fatal(err)
	}
	w.Write(text)
	w.Close()
	f.Add(streamed.Bytes(), uint32(len(text)))
	f.Add(zstdRLEBlocks(zstdFrameHeader(-1), 3, 1000), uint32(3000))
	f.Add(zstdRLEBlocks(zstdFrameHeader(2000), 2, 1000), uint32(2000))
	f.Add(append(zstdRLEBlocks(zstdFrameHeader(5), 1, 5), zstdRLEBlocks(zstdFrameHeader(7), 1, 7)...), uint32(12))
	f.Fuzz(func(t *testing.T, stored []byte, rawSize uint32) {
		if len(stored) == 0 {
			return // Open refuses empty zstd regions
		}
		limit := min(int64(len(stored))*MaxZstdRatio, 16<<20)
		rs := int64(rawSize) % (limit + 1)
		out, err := decodeZstd(stored, rs)
		if err != nil {
			return
		}
		if int64(len(out)) != rs {
			t.Fatalf("decoded %d bytes, raw_size %d", len(out), rs)
		}
	})
}
