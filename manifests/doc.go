// Package manifests holds the manifest schema: a YAML file saying which images to stylise,
// with which model and options, and where the results go. (Its kind, StyleBatch, uses
// "batch" for a whole run, and stays for the manifests written with it; everywhere else in nst
// a batch is only the pairs one lane optimises together, as --batch-size groups them.) Load
// decodes a manifest strictly and validates it, reporting every problem at once with its
// line and YAML path; it does no I/O beyond its reader and never touches the network.
//
// A manifest:
//
//	apiVersion: nst/v1
//	kind: StyleBatch
//	metadata:
//	  name: catalogue-2026-11          # DNS-label-like; run IDs are built from it
//	  labels: {team: catalogue}
//	spec:
//	  model:
//	    weights: s3://models/vgg19-dcbb9e9d.pth   # or "random" (tests, demos), with optional randomSeed
//	    sha256: "<64 hex digits>"                 # optional
//	  inputs:
//	    contents:
//	      url: s3://photos/catalogue/             # a directory; keys below are relative to it
//	      include: ["*.jpg", "*.png"]             # optional path.Match patterns, see Source.Match
//	      exclude: ["drafts/*"]
//	      # keys: [a.jpg, b.jpg]                  # or name the objects instead of listing
//	    styles: {url: gs://art/styles/}
//	    pairing: cross                            # cross (default) | zip | list
//	    # pairs: [{content: a.jpg, style: wave.jpg}]   # only with pairing: list
//	  params:                                     # engine options for every pair; all optional
//	    size: 512
//	    steps: 300
//	    optimizer: lbfgs                          # adam | lbfgs
//	    lr: 1
//	    init: content                             # content | noise | style
//	    styleLayers: {conv1_1: 1, conv2_1: 0.8}   # order kept
//	  presets:                                    # each pair runs once per preset
//	    - {name: default, contentWeight: 1, styleWeight: 1e6}
//	    - {name: bold, styleWeight: 1e7, styleLayers: {conv1_1: 1, conv2_1: 1}}
//	  presetsFrom: s3://config/weights-2026-11.yaml   # optional: more presets, see LoadPresets
//	  output:
//	    url: s3://photos/stylized/                # must not overlap the inputs
//	    format: png                               # png (default) | jpeg (or jpg), with jpegQuality 1..100
//
// Engine options are Options, with pointer fields so that "unset" differs from zero; the
// pipeline merges spec.params with each preset (Options.Merge) and converts the result to the
// engine's parameters, checking what only the engine knows (such as which layers exist) and
// reporting it at the line given by Options.LineOf, Preset.Line or LayerWeight.Line.
//
// Presets kept in a separate file (spec.presetsFrom) are fetched by the caller, read with
// LoadPresets and added with MergePresets; this package never opens a URL. SplitURL and
// SplitObjectURL turn the manifest's URLs into a bucket URL and a prefix or key.
package manifests
