package convert

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBuiltinCLIPTokenizer checks that the vocabulary built from the
// embedded merge list is byte for byte the reference tokenizer's.
func TestBuiltinCLIPTokenizer(t *testing.T) {
	dir := filepath.Join(goldenDir(t), "tokenizer")
	vocab, merges, err := BuiltinCLIPTokenizer()
	require.NoError(t, err)
	wantVocab, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	require.NoError(t, err)
	wantMerges, err := os.ReadFile(filepath.Join(dir, "merges.txt"))
	require.NoError(t, err)
	require.Equal(t, len(wantVocab), len(vocab))
	require.True(t, string(wantVocab) == string(vocab), "vocab.json differs")
	require.Equal(t, len(wantMerges), len(merges))
	require.True(t, string(wantMerges) == string(merges), "merges.txt differs")
	cfg, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	require.NoError(t, err)
	require.JSONEq(t, string(cfg), builtinTokenizerConfig)
	st, err := os.ReadFile(filepath.Join(dir, "special_tokens_map.json"))
	require.NoError(t, err)
	require.JSONEq(t, string(st), builtinSpecialTokens)
}
