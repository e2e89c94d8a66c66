-- Builds the studies' default corpus (docs/data.md): the GCIDE and WordNet dictionaries
-- (Debian's dict-gcide, dict-wn) one entry a document, and the KJV (data/kjv.txt, made
-- first when missing) one chapter a document, split by documents with a seed into
-- train.txt, val.txt and test.txt under out, with out/corpus.tsv (sources, sizes, the
-- split). `make` runs it; the studies also build it on first use (blt.data.studies_corpus).
-- A finished build with the same seed and fractions is left alone.
--
--   ./blt scripts/make_studies_corpus.lua [out=data/studies] [seed=1] [val=0.05] [test=0.05] [force=true]
local config = require "blt.config"
local cb = require "blt.corpus_build"
local util = require "blt.util"

local opts = config.script {
    name = "make_studies_corpus", args = arg,
    usage = "usage: ./blt scripts/make_studies_corpus.lua [out=data/studies] [seed=1] [val=0.05] [test=0.05] [force=true]",
    defaults = {out = "data/studies", seed = cb.SEED, val = cb.VAL, test = cb.TEST, force = false},
    docs = {out = "folder to write (train.txt, val.txt, test.txt, corpus.tsv)",
            seed = "seed of the document-level split", val = "fraction of each source's documents in val",
            test = "fraction of each source's documents in test", force = "rebuild even when up to date"},
    rules = {seed = ">= 0", val = "(0, 0.5)", test = "(0, 0.5)",
             out = function(v) if v == "" then return "must not be empty" end end},
}
if not opts then return end -- --help

-- up to date: a manifest (written last) with this seed and these fractions
local manifest = util.read_file(opts.out .. "/" .. require("blt.data").SPLIT_MANIFEST)
local want = ("\nseed\t%d\nfractions\tval=%g\ttest=%g\n"):format(opts.seed, opts.val, opts.test)
if manifest and not opts.force and manifest:find(want, 1, true) then
    print(("make_studies_corpus: %s is up to date (force=true rebuilds it)"):format(opts.out))
    return
end

local ok, m = pcall(cb.build_default, opts.out, {seed = opts.seed, val = opts.val, test = opts.test})
if not ok then util.die("make_studies_corpus", m) end
local total_docs, total_bytes = 0, 0
for _, k in ipairs {"train", "val", "test"} do
    total_docs, total_bytes = total_docs + m.splits[k].documents, total_bytes + m.splits[k].bytes
end
for _, s in ipairs(m.sources) do
    print(("make_studies_corpus: %-6s %7d documents %10d bytes (train %d, val %d, test %d)")
          :format(s.name, s.documents, s.bytes, s.train.documents, s.val.documents, s.test.documents))
end
for _, k in ipairs {"train", "val", "test"} do
    print(("make_studies_corpus: %-6s %7d documents %10d bytes"):format(k, m.splits[k].documents, m.splits[k].bytes))
end
print(("make_studies_corpus: wrote %s (%d documents, %d bytes, seed %d)"):format(opts.out, total_docs, total_bytes, m.seed))
