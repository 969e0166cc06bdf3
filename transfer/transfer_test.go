package transfer

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"strings"
	"testing"
)

func testCheckpoint() *Checkpoint {
	return &Checkpoint{
		ParamsDigest: DefaultParams().Digest(),
		Scale:        1,
		Step:         2,
		Width:        2,
		Height:       1,
		Image:        []float32{0.1, 0.2, 0.3, 0.4, 0.5, 0.6},
		Optimizer:    Adam,
		State:        map[string][]float32{"m": {1, 2}, "v": {3}},
		Log:          []Step{{Step: 1, ContentLoss: 1, TotalLoss: 2}, {Step: 2, Scale: 1, StyleLoss: 0.5, ElapsedS: 1.5}},
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	c := testCheckpoint()
	b, err := c.MarshalBinary() // once recursed forever through gob's BinaryMarshaler support
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 0 {
		t.Error("MarshalBinary changed its receiver")
	}
	var back Checkpoint
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := *c
	want.Version = checkpointVersion
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, want)
	}
	// A Checkpoint inside another gob value goes through MarshalBinary too.
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(struct{ C *Checkpoint }{c}); err != nil {
		t.Fatal(err)
	}
	var outer struct{ C *Checkpoint }
	if err := gob.NewDecoder(&buf).Decode(&outer); err != nil || !reflect.DeepEqual(*outer.C, want) {
		t.Errorf("nested: %v, %+v", err, outer.C)
	}
}

func TestCheckpointCorruption(t *testing.T) {
	good, err := testCheckpoint().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	encode := func(edit func(*checkpointData)) []byte {
		cc := checkpointData(*testCheckpoint())
		cc.Version = checkpointVersion
		edit(&cc)
		var b bytes.Buffer
		if err := gob.NewEncoder(&b).Encode(&cc); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "decode checkpoint"},
		{"truncated", good[:len(good)-7], "decode checkpoint"},
		{"garbage", []byte("not a checkpoint at all"), "decode checkpoint"},
		{"other version", encode(func(c *checkpointData) { c.Version = 2 }), "version 2"},
		{"image of wrong length", encode(func(c *checkpointData) { c.Image = c.Image[:5] }), "image of 5 values for 2x1"},
		{"no size", encode(func(c *checkpointData) { c.Width, c.Image = 0, nil }), "for 0x1"},
		{"step and log disagree", encode(func(c *checkpointData) { c.Step = 3 }), "step 3 but 2 logged steps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Checkpoint{Step: 99}
			err := c.UnmarshalBinary(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UnmarshalBinary = %v, want an error saying %q", err, tt.want)
			}
			if c.Step != 99 {
				t.Error("a failed UnmarshalBinary changed its receiver")
			}
		})
	}
}

func TestResultFinal(t *testing.T) {
	var nilResult *Result
	if nilResult.Final() != (Step{}) || (&Result{}).Final() != (Step{}) {
		t.Error("Final of nil or empty result must be zero")
	}
	r := &Result{Log: []Step{{Step: 1}, {Step: 2, TotalLoss: 3}}}
	if r.Final() != (Step{Step: 2, TotalLoss: 3}) {
		t.Errorf("Final = %+v", r.Final())
	}
}
