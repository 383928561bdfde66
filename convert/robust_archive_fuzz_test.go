package convert

import (
	"archive/zip"
	"bytes"
	"testing"
)

// seedArchive is a small torch.save-like checkpoint: the entries PyTorch
// writes (data.pkl, byteorder, version, storages padded to 64 bytes with
// an "FB" extra field), so that mutations start from the real layout.
func seedArchive(t testing.TB, method uint16) []byte {
	pkl := stateDict(
		tensorSpec{name: "a", storageType: "FloatStorage", key: "0", numel: 8, size: []int64{2, 3}, stride: []int64{3, 1}},
		tensorSpec{name: "b", storageType: "HalfStorage", key: "1", numel: 4, offset: 1, size: []int64{3}, stride: []int64{1}, param: true},
		tensorSpec{name: "c", storageType: "FloatStorage", key: "0", numel: 8, size: []int64{2, 2}, stride: []int64{1, 2}},
	)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte, m uint16) {
		h := &zip.FileHeader{Name: name, Method: m}
		if m == zip.Store {
			// torch.save aligns storage data to 64 bytes with an extra field.
			h.Extra = []byte{'F', 'B', 4, 0, 'Z', 'Z', 'Z', 'Z'}
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	add("archive/data.pkl", pkl, method)
	add("archive/byteorder", []byte("little"), method)
	add("archive/data/0", f32Bytes(0, 1, 2, 3, 4, 5, 6, 7), zip.Store)
	add("archive/data/1", []byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44}, zip.Store)
	add("archive/version", []byte("3\n"), method)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzTorchArchive opens arbitrary bytes as a torch.save zip archive (the
// zip directory, entry headers, byteorder, data.pkl and storages all
// fuzzed, unlike FuzzTorchZip, which fuzzes only the pickle): never a
// panic, and every tensor read has exactly numel × dtype size bytes.
func FuzzTorchArchive(f *testing.F) {
	f.Add(seedArchive(f, zip.Store), false)
	f.Add(seedArchive(f, zip.Deflate), true)
	f.Add(torchZip(f, zipEntry{name: "x/data.pkl", data: []byte{opProto, 2, opEmptyDict, opStop}}), false)
	f.Add([]byte("PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00"), false)
	f.Fuzz(func(t *testing.T, data []byte, opaque bool) {
		tf, err := ParseTorch(bytes.NewReader(data), int64(len(data)), "fuzz.bin", PickleOptions{AllowOpaque: opaque})
		if err != nil {
			return
		}
		for _, n := range tf.Names() {
			tt, err := tf.Tensor(n)
			if err != nil {
				continue
			}
			if len(tt.Data) != tt.Numel()*tt.DType.Size() {
				t.Fatalf("tensor %q: %d bytes for shape %v %s", n, len(tt.Data), tt.Shape, tt.DType)
			}
		}
		tf.Close()
	})
}
