package convert

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // the CLIP BPE merges
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// clipBPE is OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz (the merge list
// CLIP's SimpleTokenizer and transformers' CLIPTokenizer are built from).
//
//go:embed clip_bpe_simple_vocab_16e6.txt.gz
var clipBPE []byte

// The CLIP vocabulary: 256 byte symbols, their 256 "</w>" forms, 48,894
// merges and the two specials.
const (
	clipMerges    = 49152 - 256 - 2
	clipVocabSize = 2*256 + clipMerges + 2
)

// builtinTokenizerConfig and builtinSpecialTokens are the tokenizer files of
// the Karlo diffusers release (spec §12).
const builtinTokenizerConfig = `{
  "added_tokens_decoder": {
    "0": {
      "content": "!",
      "lstrip": false,
      "normalized": false,
      "rstrip": false,
      "single_word": false,
      "special": true
    },
    "49406": {
      "content": "<|startoftext|>",
      "lstrip": false,
      "normalized": true,
      "rstrip": false,
      "single_word": false,
      "special": true
    },
    "49407": {
      "content": "<|endoftext|>",
      "lstrip": false,
      "normalized": true,
      "rstrip": false,
      "single_word": false,
      "special": true
    }
  },
  "bos_token": "<|startoftext|>",
  "clean_up_tokenization_spaces": true,
  "eos_token": "<|endoftext|>",
  "errors": "replace",
  "model_max_length": 77,
  "pad_token": "!",
  "tokenizer_class": "CLIPTokenizer",
  "unk_token": "<|endoftext|>"
}
`

const builtinSpecialTokens = `{
  "bos_token": {
    "content": "<|startoftext|>",
    "lstrip": false,
    "normalized": true,
    "rstrip": false,
    "single_word": false
  },
  "eos_token": {
    "content": "<|endoftext|>",
    "lstrip": false,
    "normalized": true,
    "rstrip": false,
    "single_word": false
  },
  "pad_token": {
    "content": "!",
    "lstrip": false,
    "normalized": false,
    "rstrip": false,
    "single_word": false
  },
  "unk_token": {
    "content": "<|endoftext|>",
    "lstrip": false,
    "normalized": true,
    "rstrip": false,
    "single_word": false
  }
}
`

var (
	builtinOnce   sync.Once
	builtinVocab  []byte
	builtinMerges []byte
	builtinErr    error
)

// BuiltinCLIPTokenizer returns the standard CLIP tokenizer files
// (openai/clip-vit-large-patch14's vocab.json and merges.txt, 49,408
// tokens), built from the embedded BPE merge list exactly as transformers'
// CLIPTokenizer builds and saves them. The slices are shared: do not
// modify them.
func BuiltinCLIPTokenizer() (vocabJSON, mergesTXT []byte, err error) {
	builtinOnce.Do(func() { builtinVocab, builtinMerges, builtinErr = buildCLIPTokenizer(clipBPE) })
	return builtinVocab, builtinMerges, builtinErr
}

// byteSymbols is GPT-2/CLIP's bytes_to_unicode: printable bytes stand for
// themselves, the others for code points from 256 on; the vocabulary
// starts with the symbols in this order.
func byteSymbols() (order []byte, sym [256]rune) {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	for b := range 256 {
		if printable(b) {
			order = append(order, byte(b))
			sym[b] = rune(b)
		}
	}
	n := 0
	for b := range 256 {
		if !printable(b) {
			order = append(order, byte(b))
			sym[b] = rune(256 + n)
			n++
		}
	}
	return order, sym
}

// buildCLIPTokenizer makes vocab.json and merges.txt from a gzipped
// bpe_simple_vocab file: its first line is a header, the next 48,894 lines
// are the merges in rank order.
func buildCLIPTokenizer(gz []byte) (vocabJSON, mergesTXT []byte, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var merges [][2]string
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue
		}
		if len(merges) == clipMerges {
			break
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: line %d: want two symbols", line+1)
		}
		merges = append(merges, [2]string{f[0], f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: %w", err)
	}
	if len(merges) != clipMerges {
		return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: %d merges, want %d", len(merges), clipMerges)
	}

	order, sym := byteSymbols()
	tokens := make([]string, 0, clipVocabSize)
	for _, b := range order {
		tokens = append(tokens, string(sym[b]))
	}
	for _, b := range order {
		tokens = append(tokens, string(sym[b])+"</w>")
	}
	for _, m := range merges {
		tokens = append(tokens, m[0]+m[1])
	}
	tokens = append(tokens, "<|startoftext|>", "<|endoftext|>")

	// vocab.json as transformers writes it: json.dumps(encoder, indent=2,
	// sort_keys=True, ensure_ascii=False) + "\n". Python sorts by code
	// point, which for valid UTF-8 is Go's byte order.
	ids := make(map[string]int, len(tokens))
	for i, t := range tokens {
		if _, dup := ids[t]; !dup {
			ids[t] = i
		}
	}
	if len(ids) != clipVocabSize {
		return nil, nil, fmt.Errorf("convert: built-in CLIP vocabulary: %d distinct tokens, want %d", len(ids), clipVocabSize)
	}
	keys := make([]string, 0, len(ids))
	for k := range ids {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var v bytes.Buffer
	v.Grow(1 << 20)
	v.WriteString("{\n")
	for i, k := range keys {
		v.WriteString("  ")
		writePyJSONString(&v, k)
		v.WriteString(": ")
		v.WriteString(strconv.Itoa(ids[k]))
		if i < len(keys)-1 {
			v.WriteByte(',')
		}
		v.WriteByte('\n')
	}
	v.WriteString("}\n")

	var m bytes.Buffer
	m.Grow(600 << 10)
	m.WriteString("#version: 0.2\n")
	for _, mg := range merges {
		m.WriteString(mg[0])
		m.WriteByte(' ')
		m.WriteString(mg[1])
		m.WriteByte('\n')
	}
	return v.Bytes(), m.Bytes(), nil
}

// writePyJSONString writes s as Python's json.dumps(ensure_ascii=False)
// does: only the quote, the backslash and control characters are escaped.
func writePyJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
