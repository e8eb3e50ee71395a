// Embedding gather and its deterministic backward (a stable radix sort of positions by id,
// then a segment sum), without float atomics. 256 invocations per workgroup; the grid is 2-D
// (linear workgroup index = wid.y * nwg.x + wid.x).
//
//   gather         out[k, c] = weight[ids[k], c], or 0 when ids[k] >= vocab
//                  bindings: 1 weight (vocab, d) f32, 2 ids (n) u32, 3 out (n, d) f32
//   iota           pos[k] = k                                    bindings: 4 pos (n) u32
//   digit_hist     table[digit * blocks + b] = count of the digit in block b of src
//                  bindings: 5 ids (n), 6 src (n) u32, 7 table (256 * blocks) u32
//   scan_table     exclusive prefix sum of table, in place (one workgroup)
//                  bindings: 8 table (len) u32
//   digit_scatter  dst[table[digit * blocks + b] + rank in block] = src[k]
//                  bindings: 9 ids (n), 10 src (n), 11 table (256 * blocks), 12 dst (n) u32
//   segment_sum    out[id, c] = sum over the run of sorted positions with that id of grad[pos, c]
//                  bindings: 13 ids (n), 14 sorted (n) u32, 15 grad (n, d) f32, 16 out (vocab, d) f32
//
// Backward, why it is deterministic: the key of position k is min(ids[k], vocab) (out-of-range
// ids sort last and are dropped). An LSD radix sort on 8-bit digits (as many passes as the key
// needs) orders the positions by key; each pass is a counting sort over blocks of 256
// positions: a per-block digit histogram (u32 workgroup atomics: counts do not depend on
// order), an exclusive scan of the digit-major table (global start of each (digit, block)),
// and a scatter where each position's rank is the number of earlier positions of its block
// with the same digit. Every pass is stable, so within one id the positions stay in increasing
// order. segment_sum then gives one invocation per (run head, column) and adds that run's
// gradient rows in that order: the same float additions in the same order on every run, and
// bit-identical to a sequential CPU f32 sum over positions. Work: O(n * d + n * passes * 256);
// `out` must be zeroed first (unused rows stay 0).

struct Params {
    n: u32,      // number of ids
    d: u32,      // embedding width
    vocab: u32,
    shift: u32,  // bit offset of this pass's digit
    blocks: u32, // ceil(n / 256)
    len: u32,    // elements covered by the dispatch (gather, segment_sum: n * d; scan: table)
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> g_weight: array<f32>;
@group(0) @binding(2) var<storage, read> g_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> g_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> iota_pos: array<u32>;
@group(0) @binding(5) var<storage, read> h_ids: array<u32>;
@group(0) @binding(6) var<storage, read> h_src: array<u32>;
@group(0) @binding(7) var<storage, read_write> h_table: array<u32>;
@group(0) @binding(8) var<storage, read_write> s_table: array<u32>;
@group(0) @binding(9) var<storage, read> x_ids: array<u32>;
@group(0) @binding(10) var<storage, read> x_src: array<u32>;
@group(0) @binding(11) var<storage, read> x_table: array<u32>;
@group(0) @binding(12) var<storage, read_write> x_dst: array<u32>;
@group(0) @binding(13) var<storage, read> seg_ids: array<u32>;
@group(0) @binding(14) var<storage, read> seg_sorted: array<u32>;
@group(0) @binding(15) var<storage, read> seg_grad: array<f32>;
@group(0) @binding(16) var<storage, read_write> seg_out: array<f32>;

const WG: u32 = 256u;
const NO_DIGIT: u32 = 0xffffffffu;

var<workgroup> wg_counts: array<atomic<u32>, 256>;
var<workgroup> wg_u32: array<u32, 256>;

fn group_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = group_id(wid, nwg) * WG + lid;
    if (i >= p.len) { return; }
    let id = g_ids[i / p.d];
    var v = 0.0;
    if (id < p.vocab) {
        v = g_weight[id * p.d + i % p.d];
    }
    g_out[i] = v;
}

@compute @workgroup_size(256)
fn iota(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = group_id(wid, nwg) * WG + lid;
    if (i >= p.n) { return; }
    iota_pos[i] = i;
}

@compute @workgroup_size(256)
fn digit_hist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = group_id(wid, nwg);
    if (b >= p.blocks) { return; } // uniform over the workgroup
    atomicStore(&wg_counts[lid], 0u);
    workgroupBarrier();
    let k = b * WG + lid;
    if (k < p.n) {
        let key = min(h_ids[h_src[k]], p.vocab);
        atomicAdd(&wg_counts[(key >> p.shift) & 0xffu], 1u);
    }
    workgroupBarrier();
    h_table[lid * p.blocks + b] = atomicLoad(&wg_counts[lid]);
}

// One workgroup scans the whole table, 1024 entries (4 per invocation) at a time.
@compute @workgroup_size(256)
fn scan_table(@builtin(local_invocation_index) lid: u32) {
    var carry = 0u;
    let chunks = (p.len + 1023u) / 1024u;
    for (var ch = 0u; ch < chunks; ch++) {
        let base = ch * 1024u + lid * 4u;
        var v = vec4<u32>(0u);
        for (var j = 0u; j < 4u; j++) {
            if (base + j < p.len) {
                v[j] = s_table[base + j];
            }
        }
        let local_sum = v.x + v.y + v.z + v.w;
        wg_u32[lid] = local_sum;
        workgroupBarrier();
        // Hillis-Steele inclusive scan of the 256 local sums
        for (var off = 1u; off < WG; off = off << 1u) {
            var t = 0u;
            if (lid >= off) {
                t = wg_u32[lid - off];
            }
            workgroupBarrier();
            wg_u32[lid] += t;
            workgroupBarrier();
        }
        var run = carry + wg_u32[lid] - local_sum;
        carry += wg_u32[WG - 1u];
        for (var j = 0u; j < 4u; j++) {
            if (base + j < p.len) {
                s_table[base + j] = run;
            }
            run += v[j];
        }
        workgroupBarrier(); // every read of wg_u32 is done before the next chunk writes it
    }
}

@compute @workgroup_size(256)
fn digit_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let b = group_id(wid, nwg);
    if (b >= p.blocks) { return; } // uniform over the workgroup
    let k = b * WG + lid;
    var pos = 0u;
    var digit = NO_DIGIT;
    if (k < p.n) {
        pos = x_src[k];
        digit = (min(x_ids[pos], p.vocab) >> p.shift) & 0xffu;
    }
    wg_u32[lid] = digit;
    workgroupBarrier();
    if (k < p.n) {
        var rank = 0u;
        for (var s = 0u; s < lid; s++) {
            rank += select(0u, 1u, wg_u32[s] == digit);
        }
        x_dst[x_table[digit * p.blocks + b] + rank] = pos;
    }
}

@compute @workgroup_size(256)
fn segment_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = group_id(wid, nwg) * WG + lid;
    if (i >= p.len) { return; }
    let k = i / p.d;
    let c = i % p.d;
    let key = min(seg_ids[seg_sorted[k]], p.vocab);
    if (key >= p.vocab) { return; } // out-of-range ids get no gradient
    if (k > 0u && min(seg_ids[seg_sorted[k - 1u]], p.vocab) == key) { return; } // not a run head
    var acc = 0.0;
    for (var j = k; j < p.n; j++) {
        let pos = seg_sorted[j];
        if (seg_ids[pos] != key) { break; }
        acc += seg_grad[pos * p.d + c];
    }
    seg_out[key * p.d + c] = acc;
}
