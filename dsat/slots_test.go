package dsat

import (
	"strings"
	"testing"
	"time"
)

// crc16 is Redis Cluster's key hash (CRC16-CCITT, XMODEM), written here so
// the test does not trust miniredis's fake CLUSTER KEYSLOT.
func crc16(b string) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc ^= uint16(b[i]) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func TestCRC16(t *testing.T) {
	t.Parallel()
	if crc16("123456789") != 0x31C3 {
		t.Fatalf("crc16 check value %x", crc16("123456789"))
	}
	if keySlot("foo") != 12182 || keySlot("{user1000}.following") != keySlot("{user1000}.followers") {
		t.Fatal("slot computation differs from Redis Cluster's")
	}
}

// TestEveryScriptCallUsesOneSlot builds the KEYS of every script call for
// each partition of a 12-partition pipeline and checks they hash to one
// slot, and that the partitions spread over many slots.
func TestEveryScriptCallUsesOneSlot(t *testing.T) {
	t.Parallel()
	src := strings.Replace(textstats, "partitions: 1", "partitions: 12", 1)
	p, err := ParsePipeline("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(nil, Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	slots := map[uint16]bool{}
	for n := 0; n < p.Partitions; n++ {
		part := p.Partition(n)
		id := NewTaskID(part, time.Now()).String()
		calls := map[string][]string{}
		sc, err := c.submitCalls("textstats", [][]byte{[]byte(`{}`)}, SubmitOptions{IdempotencyKey: "k{1}"})
		if err != nil {
			t.Fatal(err)
		}
		calls["submit"] = sc[0].keys
		sb, err := c.submitCalls("textstats", [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)}, SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range sb {
			calls["submit batch "+call.part.Tag()] = call.keys
		}
		for _, step := range p.Order {
			id2 := NewTaskID(part, time.Now()).String()
			d := Delivery{Envelope: Envelope{Task: id, Step: step, Token: "1", Attempt: 1}, EntryID: "1-0", Worker: "w"}
			d2 := Delivery{Envelope: Envelope{Task: id2, Step: step, Token: "2", Attempt: 1}, EntryID: "2-0", Worker: "w"}
			errs := make([]error, 2)
			bg := c.beginCalls([]Delivery{d, d2}, errs, c.cfg.Now())
			cg := c.completeCalls([]Completion{{Delivery: d, Output: []byte(`{}`)}, {Delivery: d2, Output: []byte(`{}`)}}, errs)
			if len(bg) != 1 || len(cg) != 1 || errs[0] != nil || errs[1] != nil {
				t.Fatalf("a batch of one partition and step should be one call: %d, %d, %v", len(bg), len(cg), errs)
			}
			calls["begin/"+step] = bg[0].keys
			calls["complete/"+step] = cg[0].keys
			fk, _, _, err := c.failCall(d, Failure{Message: "x"})
			if err != nil {
				t.Fatal(err)
			}
			calls["fail/"+step] = fk
		}
		rk, _, err := c.retryCall(id)
		if err != nil {
			t.Fatal(err)
		}
		calls["retry"] = rk
		tid, _ := ParseTaskID(id)
		calls["cancel"], _ = c.cancelCall(tid, "")
		calls["promote"] = append([]string{c.keys.Retry(part), c.keys.Dead(part)}, stepKeys(c, part, p)...)
		for name, keys := range calls {
			if len(keys) < 2 {
				t.Fatalf("%s: only %d keys", name, len(keys))
			}
			s := keySlot(keys[0])
			for _, k := range keys[1:] {
				if keySlot(k) != s {
					t.Fatalf("partition %d, %s: key %s is in slot %d, %s in %d", n, name, k, keySlot(k), keys[0], s)
				}
			}
			slots[s] = true
		}
	}
	// The submit call picks its partition by the idempotency key, so count
	// the partitions' own slots: 12 partitions should not share few slots.
	if len(slots) < 10 {
		t.Fatalf("12 partitions map to only %d slots", len(slots))
	}
}

func stepKeys(c *Client, part Partition, p *Pipeline) []string {
	var out []string
	for _, s := range p.Order {
		out = append(out, c.keys.Step(part, s))
	}
	return out
}
