// Package pipeline runs a manifest: it lists the manifest's content and style images,
// pairs them, takes one shard of the pairs, stylises each with a transfer.Engine and writes
// the results, loss logs and provenance back to a bucket.
//
// # Work items
//
// Pairs (cross, zip or list, see manifests.Inputs) times presets are work items, in a fixed
// order: pairs in pairing order (contents, then styles, by key), and for each pair the presets
// in the manifest's order (spec.presets, then presetsFrom's). Each item has an ID, the first 16
// hex digits of a SHA-256 over the content's and the style's keys, versions (MD5, else ETag,
// else modification time) and sizes, the effective transfer.Params (DefaultParams, overridden by
// spec.params, overridden by the preset), the output format and the weights' digest. Equal
// inputs and parameters give equal IDs on every machine.
//
// # Shards
//
// Shard i of n takes the items whose position in that order is congruent to i modulo n, so
// every item belongs to exactly one shard and shards stay balanced.
//
// # Outputs
//
// For content key c (relative to the contents URL, extension dropped, directories kept), style
// key s (its base name without extension) and preset p, an item writes under the output URL
//
//	p/c__s.png (or .jpg)   the image
//	p/c__s.loss.jsonl      one transfer.Step a line
//	p/c__s.loss.png        the loss curves on a log scale (render.LossPlot)
//	p/c__s.json            provenance (Provenance), written last: the item's done marker
//
// each with the object metadata "nst-id: <ID>". An item whose provenance holds its ID is skipped
// without downloading anything. Outputs are written with storage.WriteOnce; an image or loss log
// left by an interrupted attempt of the same ID is replaced, one of another ID is a conflict
// that fails the item, unless Config.Force. A new preset name writes new keys, so re-running a
// catalogue with new loss weights never touches earlier results.
//
// Checkpoints go to _checkpoints/<ID>.ckpt (every Config.CheckpointEvery steps and when the run
// is cancelled); the next run resumes from them. Each shard writes its summary to
// _runs/<run ID>/shard-<i>-of-<n>.json.
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
