package examples

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestWordcountScript runs wordcount.sh as the exec step does: the text is
// read by a JSON parser, so escaped quotes, escapes and unicode count right
// (the sed it replaced stopped at the first \"; issue 14).
func TestWordcountScript(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		if os.Getenv("DSAT_REQUIRE_JQ") == "1" {
			t.Fatal("jq not found and DSAT_REQUIRE_JQ=1")
		}
		t.Skip("jq not found: wordcount.sh needs it (apt-get install jq)")
	}
	for _, tc := range []struct {
		payload     string
		words, long int
	}{
		{`{"text":"the quick brown fox"}`, 4, 4},
		{`{"text":"say \"hi\" to \"them\" now"}`, 5, 4},
		{`{"text":"a\"b\" c\\\"d"}`, 2, 2},
		{`{"text":"one\ntwo\tthree \u00e9t\u00e9"}`, 4, 4},
		{`{"text":"ça va"}`, 2, 0},
		{`{"kind":"x"}`, 0, 0},
	} {
		cmd := exec.Command("sh", "wordcount.sh")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MIN_LENGTH=3"}
		cmd.Stdin = strings.NewReader(tc.payload)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tc.payload, err)
		}
		var got struct {
			Words     int `json:"words"`
			LongWords int `json:"long_words"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.Words != tc.words || got.LongWords != tc.long {
			t.Errorf("%s: %s, want %d words, %d long", tc.payload, out, tc.words, tc.long)
		}
	}
}
