#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "formats/convert.h"
#include "schedule/schedule.h"
#include "tests/test_util.h"

using namespace tessera;
using namespace tessera::schedule;
using ::testing::HasSubstr;
using tessera::testing::error_of;

namespace {

Problem device_problem(int64_t features, int64_t ld, DType value = DType::f32) {
  Problem p;
  p.op = Op::spmm;
  p.space = MemorySpace::device;
  p.value = value;
  p.rows = 1000;
  p.cols = 800;
  p.nnz = 12000;
  p.features = features;
  p.ld_b = p.ld_c = ld;
  p.mean_row_length = 12;
  return p;
}

// p with another size: rows, nnz and the mean row length that follows from them.
Problem resized(Problem p, int64_t rows, int64_t nnz) {
  p.rows = rows;
  p.nnz = nnz;
  p.mean_row_length = double(nnz) / double(rows);
  return p;
}

// The default schedule's string for p at F = f (dense operands f wide, no padding).
std::string default_at(Problem p, int64_t f) {
  p.features = p.ld_b = p.ld_c = f;
  return default_schedule(p).to_string();
}

}  // namespace

TEST(Schedule, StringFormRoundTripsForEveryScheduleInTheSpace) {
  const std::vector<Schedule> all = space(device_problem(64, 64));
  ASSERT_GT(all.size(), 20u);
  std::set<std::string> names;
  for (const Schedule& s : all) {
    const std::string text = s.to_string();
    EXPECT_TRUE(names.insert(text).second) << "duplicate " << text;
    EXPECT_EQ(parse(Op::spmm, text), s) << text;
  }
  EXPECT_TRUE(names.count("csr.row_split:tpr=8,rpb=4,vec=4"));
  EXPECT_TRUE(names.count("csr.cusparse:alg=3"));
}

TEST(Schedule, ParseFillsDefaultsAndRejectsBadText) {
  EXPECT_EQ(parse(Op::spmm, "csr.row_split:vec=2").to_string(), "csr.row_split:tpr=32,rpb=8,vec=2");
  EXPECT_EQ(parse(Op::spmm, "csr.cusparse").knob("alg"), 2);
  EXPECT_EQ(parse(Op::sddmm, "csr.row_split").to_string(), "csr.row_split:tpr=32,vec=1");
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.magic:x=1"); }), HasSubstr("unknown spmm variant 'csr.magic'"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:zz=1"); }), HasSubstr("has no knob 'zz'"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:tpr=3"); }), HasSubstr("tpr=3 is not allowed (1|2|4|8|16|32)"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:tpr=4,tpr=8"); }), HasSubstr("given twice"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:tpr=x"); }), HasSubstr("is not an integer"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:tpr"); }), HasSubstr("is not knob=value"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:tpr=8").knob("alg"); }), HasSubstr("no knob 'alg'"));
}

TEST(Schedule, CanImplementGivesReasons) {
  const Problem p = device_problem(33, 33);
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.row_split:vec=4"), p).reason, HasSubstr("multiples of 4"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.row_split:tpr=1,rpb=8"), p).reason, HasSubstr("needs 32..512"));
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.row_split:tpr=4,rpb=8,vec=1"), p).ok);
  Problem host = p;
  host.space = MemorySpace::host;
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.row_split"), host).reason, HasSubstr("runs on the device"));
  Problem ell = p;
  ell.format = Format::ell;
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.cusparse"), ell).reason, HasSubstr("takes csr"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.cusparse"), device_problem(64, 64, DType::bf16)).reason,
              HasSubstr("f32"));
  Problem sddmm = p;
  sddmm.op = Op::sddmm;
  EXPECT_FALSE(can_implement(parse(Op::spmm, "csr.cusparse"), sddmm).ok);
  // Nothing in the space breaks a rule.
  for (const Schedule& s : space(p)) EXPECT_TRUE(can_implement(s, p).ok) << s.to_string();
}

TEST(Schedule, DefaultHeuristicFollowsFeatureWidthAndRowLengths) {
  // Balanced rows on a large matrix: a sub-warp covering F with the widest vector loads.
  Problem big = device_problem(32, 32);
  big.rows = 1 << 20;
  big.nnz = 12 << 20;
  big.max_row_length = 40;
  EXPECT_EQ(default_schedule(big).to_string(), "csr.row_split:tpr=8,rpb=16,vec=4");  // 128-thread blocks
  big.features = big.ld_b = big.ld_c = 33;
  EXPECT_EQ(default_schedule(big).to_string(), "csr.row_split:tpr=32,rpb=4,vec=1");
  big.features = big.ld_b = big.ld_c = 256;
  EXPECT_EQ(default_schedule(big).to_string(), "csr.row_split:tpr=32,rpb=4,vec=4");
  // A small matrix trades vector width for threads per row until the rows fill the GPU.
  Problem small = device_problem(32, 32);
  small.max_row_length = 20;
  EXPECT_EQ(default_schedule(small).to_string(), "csr.row_split:tpr=32,rpb=4,vec=1");
  // Balanced but very short rows (a road network, 2 per row) take the merge path.
  Problem road = resized(device_problem(128, 128), 114599, 239332);
  road.max_row_length = 6;
  EXPECT_EQ(default_schedule(road).to_string(), "csr.merge_path:tpr=32,vec=4,ipt=256");
  // A few long rows, however even, take the merge path (csr.nnz_split in 16 bits at F = 32 on
  // 16M+ nonzeros): one row of 20M nonzeros (the longest row is the mean), 64 of 300k. Long rows
  // that give a warp each to the GPU keep the row split.
  for (int64_t rows : {1, 64}) {
    Problem few = resized(device_problem(32, 32), rows, rows == 1 ? 20000000 : 64 * 300000);
    few.max_row_length = int64_t(few.mean_row_length);
    EXPECT_EQ(default_schedule(few).variant, "csr.merge_path") << rows << " rows";
    few.value = DType::bf16;
    EXPECT_EQ(default_schedule(few).variant, "csr.nnz_split") << rows << " rows";
  }
  Problem many_long = resized(device_problem(32, 32), 20000, 20000 * 2000);
  many_long.max_row_length = 2100;
  EXPECT_EQ(default_schedule(many_long).variant, "csr.row_split");
  many_long = resized(many_long, 5000, 5000 * 2000);
  EXPECT_EQ(default_schedule(many_long).variant, "csr.merge_path");
  many_long.max_row_length = 1024;  // rows this short keep the row split however few
  many_long = resized(many_long, 5000, 5000 * 1000);
  EXPECT_EQ(default_schedule(many_long).variant, "csr.row_split");
  // A hub row (or an unknown longest row) takes the merge path; teams grow with the path.
  Problem skewed = big;
  skewed.nnz = 48 << 20;  // enough teams to fill the GPU with the widest loads
  skewed.features = skewed.ld_b = skewed.ld_c = 32;
  skewed.max_row_length = 100000;
  const Schedule s = default_schedule(skewed);
  EXPECT_EQ(s.variant, "csr.merge_path");
  EXPECT_EQ(s.knob("tpr"), 8);
  EXPECT_EQ(s.knob("vec"), 4);
  Problem larger = skewed;
  larger.nnz *= 16;
  EXPECT_GT(default_schedule(larger).knob("ipt"), s.knob("ipt"));
  EXPECT_EQ(default_schedule(device_problem(64, 64)).variant, "csr.merge_path");  // longest row unknown
  // A path too short to fill a quarter of the GPU with 8-lane teams trades vector width for
  // lanes (the H200's winners at F = 32 and 64).
  Problem arxiv = resized(skewed, 131072, 878318);
  EXPECT_EQ(default_schedule(arxiv).to_string(), "csr.merge_path:tpr=16,vec=2,ipt=128");
  arxiv.features = arxiv.ld_b = arxiv.ld_c = 64;
  EXPECT_EQ(default_schedule(arxiv).to_string(), "csr.merge_path:tpr=32,vec=2,ipt=256");
  road.features = road.ld_b = road.ld_c = 32;
  EXPECT_EQ(default_schedule(road).to_string(), "csr.merge_path:tpr=16,vec=2,ipt=64");
  // The GNN-sized graphs of the H200 benchmark keep the schedules it measured.
  Problem reddit = resized(skewed, 262144, 76389651);
  EXPECT_EQ(default_schedule(reddit).to_string(), "csr.merge_path:tpr=8,vec=4,ipt=1024");
  reddit.features = reddit.ld_b = reddit.ld_c = 128;
  EXPECT_EQ(default_schedule(reddit).to_string(), "csr.merge_path:tpr=32,vec=4,ipt=4096");
  // Several passes over F: shorter stretches, about sqrt(path) / 4 items.
  reddit.features = reddit.ld_b = reddit.ld_c = 512;
  EXPECT_EQ(default_schedule(reddit).to_string(), "csr.merge_path:tpr=32,vec=4,ipt=2048");
  arxiv.features = arxiv.ld_b = arxiv.ld_c = 256;
  EXPECT_EQ(default_schedule(arxiv).to_string(), "csr.merge_path:tpr=32,vec=4,ipt=256");
  Problem products = resized(skewed, 2097152, 112406120);
  EXPECT_EQ(default_schedule(products).to_string(), "csr.merge_path:tpr=8,vec=4,ipt=1024");
  products.features = products.ld_b = products.ld_c = 64;
  EXPECT_EQ(default_schedule(products).to_string(), "csr.merge_path:tpr=16,vec=4,ipt=2048");
  // 16-bit values at F = 32 on a large graph: csr.nnz_split (deterministic, so in both modes);
  // not at F = 64, not under 16M nonzeros, not when B's rows are not 16-byte aligned.
  for (DType t : {DType::bf16, DType::f16}) {
    Problem p = resized(skewed, 2097152, 112406120);
    p.value = t;
    EXPECT_EQ(default_schedule(p).to_string(), "csr.nnz_split:g=8,ept=512,queue=1");
    p.deterministic = true;
    EXPECT_EQ(default_schedule(p).to_string(), "csr.nnz_split:g=8,ept=512,queue=1");
    p.features = p.ld_b = p.ld_c = 64;
    EXPECT_EQ(default_schedule(p).variant, "csr.merge_path");
    p.features = 32;
    p.ld_b = 36;  // rows 8-byte aligned only
    EXPECT_EQ(default_schedule(p).variant, "csr.merge_path");
    Problem smaller = resized(skewed, 131072, 8 << 20);
    smaller.value = t;
    EXPECT_EQ(default_schedule(smaller).variant, "csr.merge_path");
  }
  for (int64_t f : {1, 2, 3, 5, 17, 64, 257, 1000}) {
    for (int64_t longest : {-1, 10, 100000}) {
      Problem p = device_problem(f, f);
      p.max_row_length = longest;
      EXPECT_TRUE(can_implement(default_schedule(p), p).ok) << f << " " << longest;
    }
  }
}

TEST(Schedule, DenseOperandsOffAlignedBasesTakeNarrowerLoads) {
  alignas(64) float floats[32] = {};
  EXPECT_EQ(vector_alignment(floats, sizeof(float)), 8);
  EXPECT_EQ(vector_alignment(floats + 1, sizeof(float)), 1);
  EXPECT_EQ(vector_alignment(floats + 2, sizeof(float)), 2);
  EXPECT_EQ(vector_alignment(floats + 4, sizeof(float)), 4);
  EXPECT_EQ(vector_alignment(floats + 12, sizeof(float)), 4);
  const auto* halves = reinterpret_cast<const uint16_t*>(floats);
  EXPECT_EQ(vector_alignment(halves + 3, 2), 1);
  EXPECT_EQ(vector_alignment(halves + 4, 2), 4);
  EXPECT_EQ(vector_alignment(halves + 8, 2), 8);
  EXPECT_EQ(vector_alignment(nullptr, 4), 8);  // an empty operand constrains nothing
  // A view starting one float past a 16-byte boundary (rows 64 apart): every default, SpMM and
  // SDDMM, CSR and the other formats, takes 1-wide loads; 8 bytes past, at most 2-wide.
  for (Op op : {Op::spmm, Op::sddmm}) {
    for (int64_t longest : {-1, 10, 100000}) {
      for (int64_t align : {1, 2}) {
        Problem p = device_problem(64, 64);
        p.op = op;
        p.max_row_length = longest;
        p.operand_align = align;
        const Schedule s = default_schedule(p);
        EXPECT_LE(s.knob("vec"), align) << op_name(op) << " " << s.to_string();
        EXPECT_TRUE(can_implement(s, p).ok) << s.to_string();
      }
    }
  }
  Problem reddit = resized(device_problem(32, 32), 262144, 76389651);
  reddit.op = Op::sddmm;
  reddit.max_row_length = 100000;
  reddit.operand_align = 2;  // no 4-wide loads: not the edge batches' one-pass rule
  EXPECT_EQ(default_schedule(reddit).to_string(), "csr.edge_group:tpe=4,vec=2,ept=256");
  Problem p = device_problem(64, 64);
  p.operand_align = 2;
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path:vec=4"), p).reason,
              HasSubstr("vec=4 needs the first elements of B and C aligned to 4 elements; they are aligned to 2"));
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.merge_path:vec=2"), p).ok);
  p.format = Format::ell;
  EXPECT_LE(default_schedule(p).knob("vec"), 2);
}

TEST(Schedule, DeterministicModeAdmitsOnlyVariantsThatPromiseTheSameBits) {
  for (Op op : {Op::spmm, Op::sddmm}) {
    Problem p = device_problem(64, 64);
    p.op = op;
    p.max_row_length = 40;
    const std::vector<Schedule> all = space(p);
    p.deterministic = true;
    const Verdict v = can_implement(with_defaults(op, "csr.cusparse"), p);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.reason, HasSubstr("does not promise the same bits on every run"));
    const std::vector<Schedule> strict = space(p);
    EXPECT_EQ(strict.size() + (op == Op::spmm ? 3u : 1u), all.size()) << "all but cuSPARSE remain";
    for (const Schedule& s : strict) {
      EXPECT_NE(s.variant, "csr.cusparse");
      EXPECT_TRUE(find_variant(op, s.variant).deterministic);
    }
    EXPECT_TRUE(can_implement(default_schedule(p), p).ok);
  }
}

TEST(Schedule, MergePathAndSddmmVariants) {
  EXPECT_EQ(parse(Op::spmm, "csr.merge_path:ipt=64").to_string(), "csr.merge_path:tpr=32,vec=1,ipt=64");
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.merge_path:ipt=100"); }), HasSubstr("ipt=100 is not allowed"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path:vec=2"), device_problem(33, 33)).reason,
              HasSubstr("multiples of 2"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path:tpr=4,vec=1"), device_problem(300000, 300000)).reason,
              HasSubstr("65535 feature tiles"));
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.merge_path:tpr=32,vec=4"), device_problem(300000, 300000)).ok);
  // vec=8: 16-byte loads of 8 16-bit values; f32 rows would need 32 bytes.
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path:tpr=4,vec=8"), device_problem(64, 64)).reason,
              HasSubstr("takes bf16 or f16 values, not f32"));
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.merge_path:tpr=4,vec=8"), device_problem(64, 64, DType::bf16)).ok);
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path:vec=8"), device_problem(36, 36, DType::f16)).reason,
              HasSubstr("multiples of 8"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.row_split:vec=8"); }), HasSubstr("vec=8 is not allowed"));
  // csr.nnz_split: 16-bit values, F a multiple of 32; deterministic (carries, no atomics).
  EXPECT_EQ(parse(Op::spmm, "csr.nnz_split").to_string(), "csr.nnz_split:g=8,ept=512,queue=1");
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.nnz_split:g=16"); }), HasSubstr("g=16 is not allowed"));
  EXPECT_THAT(error_of([] { parse(Op::spmm, "csr.nnz_split:rows=1"); }), HasSubstr("has no knob 'rows'"));
  Problem nnz_split_problem = device_problem(64, 64, DType::bf16);
  nnz_split_problem.deterministic = true;
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.nnz_split"), nnz_split_problem).ok);
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.nnz_split"), device_problem(64, 64)).reason,
              HasSubstr("takes bf16 or f16 values"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.nnz_split"), device_problem(48, 48, DType::f16)).reason,
              HasSubstr("multiple of 32"));
  // B's rows more than 2 GiB apart: the merge path (32-bit gather strides) refuses, and the
  // default takes the row split, which the heuristic would otherwise not pick here (rows of
  // unknown length).
  Problem far_rows = device_problem(64, int64_t(1) << 29);
  EXPECT_THAT(can_implement(parse(Op::spmm, "csr.merge_path"), far_rows).reason, HasSubstr("over 2 GiB"));
  EXPECT_EQ(default_schedule(far_rows).variant, "csr.row_split");
  far_rows.value = DType::bf16;  // 2-byte elements: the same stride is 1 GiB
  EXPECT_TRUE(can_implement(parse(Op::spmm, "csr.merge_path"), far_rows).ok);

  Problem sddmm = device_problem(64, 64);
  sddmm.op = Op::sddmm;
  EXPECT_EQ(parse(Op::sddmm, "csr.edge_group:tpe=8").to_string(), "csr.edge_group:tpe=8,vec=1,ept=32");
  EXPECT_THAT(error_of([] { parse(Op::sddmm, "csr.edge_group:tpe=2"); }), HasSubstr("tpe=2 is not allowed"));
  EXPECT_THAT(error_of([] { parse(Op::sddmm, "csr.merge_path"); }), HasSubstr("unknown sddmm variant"));
  Problem odd = sddmm;
  odd.ld_b = 66;  // X's rows are 66 apart: 4-wide loads would straddle
  EXPECT_THAT(can_implement(parse(Op::sddmm, "csr.edge_group:vec=4"), odd).reason, HasSubstr("X and Y"));
  Problem bf = sddmm;
  bf.value = DType::bf16;
  EXPECT_THAT(can_implement(parse(Op::sddmm, "csr.cusparse"), bf).reason, HasSubstr("f32"));
  const std::vector<Schedule> all = space(sddmm);
  // every row_split, every edge_group, every edge_batch, every row_batch, cusparse
  EXPECT_EQ(all.size(), 4u * 3u + 4u * 3u * 7u + 4u * 3u * 3u + 4u * 3u + 1u);
  for (const Schedule& s : all) EXPECT_EQ(parse(Op::sddmm, s.to_string()), s);
  // The SDDMM default: teams of 4..8 lanes with vector loads; a team per row when rows are
  // balanced, else runs of edges about a row long (mean 12 here) unless that leaves the GPU short
  // of teams. 12000 edges fill so little of the GPU that teams widen to one pass over F = 64.
  EXPECT_EQ(default_schedule(sddmm).to_string(), "csr.edge_group:tpe=16,vec=4,ept=4");  // longest unknown
  // The small matrices of the H200 sweep: Cora widens to a pass over F (its teams stay under a
  // third of the GPU), ca-GrQc and fidapex6 only to 8 lanes (under half).
  Problem cora = resized(sddmm, 2708, 10556);
  cora.features = cora.ld_b = cora.ld_c = 512;
  EXPECT_EQ(default_schedule(cora).to_string(), "csr.edge_group:tpe=32,vec=4,ept=4");
  Problem grqc = resized(sddmm, 5242, 28980);
  grqc.features = grqc.ld_b = grqc.ld_c = 512;
  EXPECT_EQ(default_schedule(grqc).to_string(), "csr.edge_group:tpe=8,vec=4,ept=4");
  grqc.features = grqc.ld_b = grqc.ld_c = 32;
  EXPECT_EQ(default_schedule(grqc).to_string(), "csr.edge_group:tpe=8,vec=4,ept=4");
  Problem fidap = resized(sddmm, 1651, 49533);
  fidap.features = fidap.ld_b = fidap.ld_c = 64;
  EXPECT_EQ(default_schedule(fidap).to_string(), "csr.edge_group:tpe=8,vec=4,ept=4");
  Problem short_rows = sddmm;
  short_rows.max_row_length = 16;
  EXPECT_EQ(default_schedule(short_rows).to_string(), "csr.row_split:tpr=4,vec=4");
  short_rows.max_row_length = 30;
  EXPECT_EQ(default_schedule(short_rows).variant, "csr.edge_group");
  Problem big_sddmm = sddmm;
  big_sddmm.nnz = 50 << 20;
  EXPECT_EQ(default_at(big_sddmm, 128), "csr.edge_batch:tpe=32,vec=4,ept=256");  // one pass of 32 lanes
  EXPECT_EQ(default_at(big_sddmm, 256), "csr.edge_batch:tpe=32,vec=4,ept=256");  // two passes
  EXPECT_EQ(default_at(big_sddmm, 512), "csr.edge_batch:tpe=32,vec=4,ept=256");  // four passes
  // FEM matrices (rows of 16+ edges, none over 4x the mean), f32: a warp per row. bcsstk33
  // (68 per row, at most 141; 8738 rows fill the GPU's warps once) at every F; fidapex6 (30, at
  // most 62; 1651 rows) to F = 128, then the edge groups. Teams of 8 to F = 128, then 16.
  Problem stiff = resized(sddmm, 8738, 591904);
  stiff.max_row_length = 141;
  EXPECT_EQ(default_at(stiff, 32), "csr.row_batch:tpe=8,vec=4");
  EXPECT_EQ(default_at(stiff, 64), "csr.row_batch:tpe=8,vec=4");
  EXPECT_EQ(default_at(stiff, 128), "csr.row_batch:tpe=8,vec=4");
  EXPECT_EQ(default_at(stiff, 256), "csr.row_batch:tpe=16,vec=4");
  EXPECT_EQ(default_at(stiff, 512), "csr.row_batch:tpe=16,vec=4");
  EXPECT_EQ(default_at(stiff, 16), "csr.row_batch:tpe=4,vec=4");  // one pass of 4 lanes
  Problem fem = resized(sddmm, 1651, 49533);
  fem.max_row_length = 62;
  EXPECT_EQ(default_at(fem, 32), "csr.row_batch:tpe=8,vec=4");
  EXPECT_EQ(default_at(fem, 128), "csr.row_batch:tpe=8,vec=4");
  EXPECT_EQ(default_at(fem, 256), "csr.edge_group:tpe=8,vec=4,ept=4");  // rows short of filling the GPU
  EXPECT_EQ(default_at(fem, 33), "csr.edge_group:tpe=8,vec=1,ept=4");  // no 4-wide loads
  Problem fem16 = fem;
  fem16.value = DType::bf16;  // unmeasured in 16-bit: the edge groups
  EXPECT_EQ(default_schedule(fem16).variant, "csr.edge_group");
  Problem far_y = stiff;  // Y's rows 2 GiB apart (f32): 32-bit gather strides refuse them
  far_y.features = far_y.ld_b = 32;
  far_y.ld_c = int64_t(1) << 29;
  EXPECT_THAT(can_implement(parse(Op::sddmm, "csr.row_batch:tpe=4,vec=4"), far_y).reason,
              HasSubstr("over 2 GiB"));
  EXPECT_EQ(default_schedule(far_y).to_string(), "csr.edge_group:tpe=4,vec=4,ept=8");
  far_y.value = DType::bf16;  // 2-byte elements: the same stride is 1 GiB
  EXPECT_TRUE(can_implement(parse(Op::sddmm, "csr.row_batch:tpe=4,vec=4"), far_y).ok);
  // A few long, even rows (one row of 1M edges, 64 of 16k) leave a warp per row to a handful of
  // warps: the edge groups.
  for (int64_t rows : {1, 64}) {
    Problem few = resized(sddmm, rows, rows == 1 ? 1 << 20 : 64 * 16384);
    few.max_row_length = int64_t(few.mean_row_length);
    EXPECT_EQ(default_at(few, 32).substr(0, 15), "csr.edge_group:") << rows << " rows";
  }
  stiff.max_row_length = 4 * 68 + 10;  // a row over 4x the mean: the edge groups' split
  EXPECT_EQ(default_at(stiff, 32), "csr.edge_group:tpe=4,vec=4,ept=8");
  // The GNN-sized graphs of the H200 benchmark keep the schedules it measured: runs a row long.
  Problem reddit = resized(sddmm, 262144, 76389651);
  reddit.max_row_length = 100000;
  const Problem products = resized(reddit, 2097152, 112406120);
  // The edge batches at every F: one pass over F to 128, then passes of 128.
  EXPECT_EQ(default_at(reddit, 32), "csr.edge_batch:tpe=8,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit, 64), "csr.edge_batch:tpe=16,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit, 128), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(products, 128), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(products, 256), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit, 256), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(products, 512), "csr.edge_batch:tpe=32,vec=4,ept=256");
  // bf16 values: the edge batches at every F (teams of 32 past F = 64; several passes past 128),
  // and edge groups of 4 lanes on the smaller graphs.
  Problem reddit16 = reddit;
  reddit16.value = DType::bf16;
  EXPECT_EQ(default_at(reddit16, 128), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit16, 256), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit16, 512), "csr.edge_batch:tpe=32,vec=4,ept=256");
  EXPECT_EQ(default_at(reddit16, 32), "csr.edge_batch:tpe=8,vec=4,ept=256");
  Problem arxiv16 = resized(reddit16, 131072, 878318);
  arxiv16.max_row_length = 5000;
  EXPECT_EQ(default_at(arxiv16, 128), "csr.edge_group:tpe=4,vec=4,ept=8");
  EXPECT_EQ(default_at(arxiv16, 512), "csr.edge_group:tpe=4,vec=4,ept=8");
  Problem road16 = resized(reddit16, 114599, 239332);  // rows of at most 16 edges: as in f32
  road16.max_row_length = 6;
  EXPECT_EQ(default_at(road16, 128), "csr.row_split:tpr=8,vec=4");
  Problem odd_width = resized(reddit, 2097152, 112406120);
  odd_width.features = odd_width.ld_b = odd_width.ld_c = 33;  // no 4-wide loads: the edge groups
  EXPECT_EQ(default_schedule(odd_width).variant, "csr.edge_group");
  Problem arxiv = resized(reddit, 169343, 1166243);  // under 16M nonzeros: the edge groups
  arxiv.features = arxiv.ld_b = arxiv.ld_c = 32;
  EXPECT_EQ(default_schedule(arxiv).variant, "csr.edge_group");
  for (int64_t f : {1, 3, 33, 128, 257}) {
    Problem p = device_problem(f, f);
    p.op = Op::sddmm;
    const Schedule s = default_schedule(p);
    EXPECT_TRUE(can_implement(s, p).ok) << f << " " << s.to_string();
    EXPECT_GE(s.knob("tpe"), 4);
  }
}

TEST(Schedule, DescribeReadsTheView) {
  const Csr<float, int64_t> csr = tessera::testing::random_csr<float, int64_t>({50, 40, 0.1}, 3);
  const Problem p = describe(Op::spmm, csr.view(), 16, 16, 20);
  EXPECT_EQ(p.rows, 50);
  EXPECT_EQ(p.nnz, csr.nnz());
  EXPECT_EQ(p.index, DType::i64);
  EXPECT_EQ(p.space, MemorySpace::host);
  EXPECT_EQ(p.ld_c, 20);
  EXPECT_DOUBLE_EQ(p.mean_row_length, double(csr.nnz()) / 50);
}

TEST(Schedule, EllHybridAndBsrVariants) {
  // Defaults per format.
  Problem p = device_problem(64, 64);
  p.format = Format::ell;
  p.max_row_length = 16;
  EXPECT_EQ(default_schedule(p).variant, "ell.row_split");
  p.format = Format::hybrid;
  const Schedule hyb = default_schedule(p);
  EXPECT_EQ(hyb.variant, "hyb.fused");
  EXPECT_EQ(hyb.knob("atomic"), 0) << "the default is the deterministic reduction";
  p.format = Format::bsr;
  p.block_rows = p.block_cols = 8;
  // 125 block rows of 12000 / 64 = 187 blocks: 1.5 a block row, too few to split.
  EXPECT_EQ(default_schedule(p).to_string(), "bsr.tensor_core:ft=32,wpr=1");
  Problem tall = p;  // blocks of 32 rows at F = 128: 64 features a warp
  tall.block_rows = 32;
  tall.features = tall.ld_b = tall.ld_c = 128;
  EXPECT_EQ(default_schedule(tall).knob("ft"), 64);
  p.features = p.ld_b = p.ld_c = 24;
  EXPECT_EQ(default_schedule(p).to_string(), "bsr.tensor_core:ft=32,wpr=1");
  Problem many = p;  // 64 blocks a block row, and few block rows: four warps each
  many.nnz = 125 * 64 * 64;
  EXPECT_EQ(default_schedule(many).to_string(), "bsr.tensor_core:ft=32,wpr=4");
  Problem wide = p;  // more than 65535 tiles of 32 features: tiles of 64
  wide.features = 65535 * 32 + 1;
  EXPECT_EQ(default_schedule(wide).knob("ft"), 64);
  // The space holds a format's own variants only.
  for (const Schedule& s : space(p)) EXPECT_EQ(s.variant.rfind("bsr.", 0), 0u) << s.to_string();
  EXPECT_EQ(space(p).size(), 8u);  // ft x wpr, cuSPARSE's BSR and Blocked-ELL (1000 x 800 is whole 8x8 blocks)
  // Reasons.
  EXPECT_THAT(can_implement(with_defaults(Op::spmm, "csr.row_split"), p).reason,
              HasSubstr("csr.row_split takes csr, the matrix is bsr"));
  for (const char* peer : {"bsr.cusparse", "bsr.cusparse_blocked_ell"}) {
    Problem q = p;
    EXPECT_TRUE(can_implement(with_defaults(Op::spmm, peer), q).ok) << peer;
    q.block_rows = 4;
    EXPECT_THAT(can_implement(with_defaults(Op::spmm, peer), q).reason,
                HasSubstr(std::string(peer) + " takes square blocks only, not 4x8"));
    q.block_rows = q.block_cols = 12;  // 1000 rows are not whole blocks of 12
    EXPECT_THAT(can_implement(with_defaults(Op::spmm, peer), q).reason, HasSubstr("whole blocks only"));
    q.block_rows = q.block_cols = 8;
    q.value = DType::f16;
    EXPECT_THAT(can_implement(with_defaults(Op::spmm, peer), q).reason,
                HasSubstr(std::string(peer) + " runs f32 values"));
    q.value = DType::f32;
    q.deterministic = true;
    EXPECT_THAT(can_implement(with_defaults(Op::spmm, peer), q).reason,
                HasSubstr("does not promise the same bits"));
  }
  p.block_rows = p.block_cols = 12;
  p.block_rows = 40;
  EXPECT_THAT(can_implement(with_defaults(Op::spmm, "bsr.tensor_core"), p).reason,
              HasSubstr("blocks up to 32x64, not 40x12"));
  p.block_rows = p.block_cols = 8;
  p.value = DType::bf16;
  EXPECT_TRUE(can_implement(with_defaults(Op::spmm, "bsr.tensor_core"), p).ok);
  EXPECT_THAT(can_implement(with_defaults(Op::spmm, "bsr.cusparse"), p).reason,
              HasSubstr("bsr.cusparse runs f32 values"));
  // hyb.fused: atomics only outside deterministic mode; the row_split block-size rule applies.
  Problem h = device_problem(64, 64);
  h.format = Format::hybrid;
  const Schedule atomic = parse(Op::spmm, "hyb.fused:atomic=1");
  EXPECT_TRUE(can_implement(atomic, h).ok);
  h.deterministic = true;
  EXPECT_THAT(can_implement(atomic, h).reason, HasSubstr("deterministic mode needs atomic=0"));
  EXPECT_TRUE(can_implement(parse(Op::spmm, "hyb.fused:atomic=0"), h).ok);
  EXPECT_THAT(can_implement(parse(Op::spmm, "hyb.fused:tpr=1,rpb=8"), h).reason,
              HasSubstr("tpr * rpb = 8 threads per block"));
  EXPECT_THAT(can_implement(parse(Op::spmm, "ell.row_split:vec=4"), device_problem(6, 6)).reason,
              HasSubstr("takes ell"));
}

TEST(Schedule, DescribeReadsEllHybridAndBsrViews) {
  const Csr<float, int32_t> csr = tessera::testing::random_csr<float, int32_t>({50, 40, 0.1}, 3);
  const Ell<float, int32_t> ell = csr_to_ell(csr);
  Problem p = describe(Op::spmm, ell.view(), 16, 16, 16);
  EXPECT_EQ(p.format, Format::ell);
  EXPECT_EQ(p.max_row_length, ell.width);
  EXPECT_EQ(p.nnz, 50 * ell.width);
  const Hybrid<float, int32_t> hyb = csr_to_hybrid(csr, HybParams{2, 1});
  p = describe(Op::spmm, hyb, 16, 16, 16);
  EXPECT_EQ(p.format, Format::hybrid);
  int64_t local_rows = 0;
  for (const auto& part : hyb.parts) local_rows += part.part_rows();
  EXPECT_EQ(p.rows, local_rows);
  const Bsr<float, int32_t> bsr = csr_to_bsr(csr, 8, 4);
  p = describe(Op::spmm, bsr.view(), 16, 16, 16);
  EXPECT_EQ(p.format, Format::bsr);
  EXPECT_EQ(p.block_rows, 8);
  EXPECT_EQ(p.block_cols, 4);
  EXPECT_EQ(p.rows, 50);
}

TEST(Schedule, CooSddmmVariant) {
  Problem p = device_problem(64, 64);
  p.op = Op::sddmm;
  p.format = Format::coo;
  const Schedule def = default_schedule(p);
  EXPECT_EQ(def.variant, "coo.edge_group");
  EXPECT_TRUE(can_implement(def, p).ok);
  for (const Schedule& s : space(p)) EXPECT_EQ(s.variant, "coo.edge_group") << s.to_string();
  p.format = Format::csr;
  EXPECT_THAT(can_implement(def, p).reason, HasSubstr("coo.edge_group takes coo, the matrix is csr"));
  const Coo<float, int32_t> coo = csr_to_coo(tessera::testing::random_csr<float, int32_t>({50, 40, 0.1}, 3));
  const Problem d = describe(Op::sddmm, coo.view(), 16, 16, 16);
  EXPECT_EQ(d.format, Format::coo);
  EXPECT_EQ(d.nnz, coo.nnz());
}
