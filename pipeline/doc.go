// Package pipeline runs a manifest: it lists the manifest's content and style images,
// pairs them, takes one shard of the pairs, stylises each with a transfer.Engine and writes
// the results, loss logs and provenance back to a bucket.
//
// # Work items
//
// Pairs (cross, zip or list, see manifests.Inputs) times presets are work items, streamed from
// the listings in pairing order (contents, then styles, by key; for each pair the presets in the
// manifest's order: spec.presets, then presetsFrom's). cross holds the smaller side in memory,
// zip walks both listings in lockstep, list holds its list; nothing else of the catalogue is
// held. Each item has an ID, the first 16 hex digits of a SHA-256 over the content's and the
// style's keys, versions (MD5, else ETag, else modification time) and sizes, the effective
// transfer.Params (DefaultParams, overridden by spec.params, overridden by the preset), the
// output format and the weights' digest. Equal inputs and parameters give equal IDs on every
// machine.
//
// # Shards
//
// An item's slot is the place its outputs take (the hash of its output keys, slotHash). Shard
// i of n takes the items whose slot hash falls in the i-th of n equal ranges of the 64-bit hash
// space (shardOf): every item belongs to exactly one shard whatever the listing order, an item
// keeps its shard as the catalogue grows, and shards are balanced to the hash's uniformity
// (TestShardBalance). A shard lists the inputs twice: once to count its items and refuse
// colliding outputs, once to run them; between the passes it holds at most 64 bytes per item of
// its own (TestMemoryPerItem).
//
// # Outputs
//
// For content key c (relative to the contents URL, extension dropped, directories kept), style
// key s (its base name without extension) and preset p, an item writes under the output URL
//
//	p/c__s.png (or .jpg)   the image
//	p/c__s.loss.jsonl      one transfer.Step a line
//	p/c__s.loss.png        the loss curves on a log scale (render.LossPlot)
//	p/c__s.json            provenance (Provenance), the source of truth of a finished item
//	_index/v1/<slot>.<ID>.<digest>   its done marker, written after the provenance
//
// each output with the object metadata "nst-id: <ID>". The done index is listed, not read: a
// shard lists its range of _index/v1/ and skips items whose marker it finds, without a request
// per item (readIndex). A provenance without a marker (a crash between the two) is adopted and
// re-indexed, a marker without its outputs is found by Config.Verify, and outputs of another ID
// are a conflict that Config.OnConflict settles (fail, replace, keep); docs/RELIABILITY.md has
// every case. Outputs are written with storage.WriteOnce. A new preset name writes new keys, so
// re-running a catalogue with new loss weights never touches earlier results.
//
// Checkpoints go to _checkpoints/<slot>.<ID>.ckpt (every Config.CheckpointEvery steps and when
// the run is cancelled); the next run resumes from them. Each attempt of a shard writes its
// summary (counts and the first failures) to _runs/<run ID>/shard-<i>-of-<n>.<attempt>.json and
// its per-pair log beside it as JSON Lines segments (journal.go).
//
// # Errors
//
// A pair that fails (unreadable or broken image, NaN loss, engine error, panic) is data: its
// PairResult holds a *PairError and the other pairs go on. Run returns an error only when the
// run itself cannot go on: an invalid manifest or Config (wrapping ErrInvalid: fix the input,
// retrying cannot help), an unreadable manifest, a failed listing, an engine that cannot be
// opened, a summary that cannot be written, or cancellation (wrapping context.Canceled).
//
// This package imports no blob driver and no cgo: callers register drivers (gocloud.dev/blob's
// s3blob, gcsblob, fileblob, memblob) and supply the engine through Config.NewEngine.
package pipeline
