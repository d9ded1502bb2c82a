// The traffic engine: link transmission model with individual vehicles (see traffic_engine.hpp).
//
// Flows are those of the continuous model on cumulative counts; whole vehicles follow them within
// one vehicle (a vehicle moves when the continuous count passes its front, and what it still owes
// is paid by the next steps' flow). One step [t, t+dt):
//   1. departures whose time falls in the step join the point queue of their first link;
//   2. per link: the receiving flow R_j = min(N_down(t+dt-L/w) + k_j L - N_up(t), q dt) on the
//      continuous counts (whole counts less the release debts);
//   3. per node: emergency vehicles first, then sending flows S_ij = the rest of the last released
//      vehicle plus the FIFO heads (vehicles that entered before t and whose free-flow exit time
//      T_in + L/v <= t + dt), up to capacity times the green share of the step; the node model of
//      Tampère et al. (2011) with capacity-share priorities; then the release of whole vehicles in
//      FIFO order against those flows (the difference carried as per-link credit);
//   4. the origin point queues fill what supply is left, the same way;
//   5. the continuous N_down is recorded at t + dt for the backward wave.
// A vehicle crosses at max(T_in + L/v, the time within the step at which the continuous outflow
// passes its front): on an empty link the travel time is L/v exactly, in a queue the headways are
// 1/q. Everything in 3 reads only start-of-step quantities of other nodes, so results do not depend
// on the order in which nodes are visited.
// Acceleration after a stop (on unless accel[c] is INF): a vehicle held at a node or in its origin
// queue takes min(held, v / (2 a)) longer on its next link (push_link); capacities are kept
// (shift_history, exit_time).
#include "traffic_engine.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <limits>
#include <stdexcept>

#ifdef TWIN_HAVE_OPENMP
#include <omp.h>
#endif

namespace twin {
namespace traffic {

static constexpr double EPS = 1e-9;

void Network::build_csr() {
    out_ptr.assign(n_nodes + 1, 0);
    in_ptr.assign(n_nodes + 1, 0);
    for (int32_t l = 0; l < n_links; ++l) {
        out_ptr[from[l] + 1]++;
        in_ptr[to[l] + 1]++;
    }
    for (int32_t n = 0; n < n_nodes; ++n) {
        out_ptr[n + 1] += out_ptr[n];
        in_ptr[n + 1] += in_ptr[n];
    }
    out_idx.assign(n_links, 0);
    in_idx.assign(n_links, 0);
    out_pos.assign(n_links, 0);
    std::vector<int32_t> fo(out_ptr.begin(), out_ptr.end() - 1), fi(in_ptr.begin(), in_ptr.end() - 1);
    for (int32_t l = 0; l < n_links; ++l) {
        out_pos[l] = fo[from[l]] - out_ptr[from[l]];
        out_idx[fo[from[l]]++] = l;
        in_idx[fi[to[l]]++] = l;
    }
    max_in = max_out = 0;
    for (int32_t n = 0; n < n_nodes; ++n) {
        max_in = std::max(max_in, in_ptr[n + 1] - in_ptr[n]);
        max_out = std::max(max_out, out_ptr[n + 1] - out_ptr[n]);
    }
}

void Engine::init(Network&& n, double dt_) {
    net = std::move(n);
    dt = dt_;
    net.build_csr();
    const int32_t L = net.n_links;
    veff = net.vfree;
    qeff = net.qcap;
    closed_manual.assign(L, 0);
    closed_mask.assign(L, 0);
    Nup.assign(L, 0.0);
    Ndown.assign(L, 0.0);
    rel_credit.assign(L, 0.0);
    recv_credit.assign(L, 0.0);
    ndlag.assign(L, 0.0);
    Rlink.assign(L, 0.0);
    head.assign(L, -1);
    head_since.assign(L, 0.0);
    tail.assign(L, -1);
    wait_head.assign(L, -1);
    wait_tail.assign(L, -1);
    nveh.assign(L, 0);
    nemerg.assign(L, 0);
    nwait.assign(L, 0);
    exits_total.assign(L, 0);
    entries_total.assign(L, 0);
    hist_off.assign(L + 1, 0);
    hist_len.assign(L, 0);
    for (int32_t l = 0; l < L; ++l) {
        const double lag_steps = net.length[l] / (net.w[l] * dt);  // bounded by the binding (kMaxHistSlots)
        if (!(lag_steps >= 0.0 && lag_steps <= (double)kMaxHistSlots))  // before the cast: no UB on inf
            throw std::length_error("traffic: link history beyond kMaxHistSlots (the binding checks this first)");
        const int64_t hl = (int64_t)std::ceil(lag_steps) + 2;
        if (hist_off[l] + hl > kMaxHistSlots)
            throw std::length_error("traffic: link history beyond kMaxHistSlots (the binding checks this first)");
        hist_len[l] = (int32_t)hl;
        hist_off[l + 1] = hist_off[l] + hist_len[l];
    }
    hist.assign(hist_off[L], 0.0);
    debt_to.assign(L, -1);
    shift.assign(L, 0.0);
    last_exit.assign(L, -INF);
    dcont_prev.assign(L, 0.0);
    uc_adj.assign(L, 0.0);
    gta.assign(net.max_in + 1, 0.0);
    gtb.assign(net.max_in + 1, 0.0);
    gfr.assign(net.max_in + 1, 0.0);
    const int m = std::max(1, net.max_in) * (std::max(1, net.max_out) + 1);
    S.assign(m, 0.0);
    Si.assign(net.max_in + 1, 0.0);
    Cq.assign(net.max_in + 1, 0.0);
    q.assign(net.max_in + 1, 0.0);
    act.assign(net.max_in + 1, 0);
    R.assign(net.max_out + 2, 0.0);
    Rt.assign(net.max_out + 2, 0.0);
}

double Engine::ndown_at(int32_t l, double s) const {
    // continuous N_down at (fractional) step boundary s, linear in between; nothing left before t = 0
    const double k = (double)step_k;
    const double* hb = hist.data() + hist_off[l];
    const int64_t H = hist_len[l];
    if (s >= k) return hb[step_k % H];
    const double f0 = std::floor(s);
    const int64_t i0 = (int64_t)f0;
    const double fr = s - f0;
    const double v0 = i0 < 0 ? 0.0 : hb[i0 % H];
    const double v1 = (i0 + 1) < 0 ? 0.0 : hb[(i0 + 1) % H];
    return v0 + fr * (v1 - v0);
}

double Engine::link_tt(int32_t l) const {
    // free-flow time at the flooded speed plus the time to discharge the standing queue
    return net.length[l] / veff[l];
}

void Engine::class_cost(int c, double* out) const {
    const int32_t L = net.n_links;
    // queued PCU at the link end, discharged at capacity
    std::vector<int32_t> qc(L);
    std::vector<double> qp(L);
    queue_counts(qc.data(), qp.data());
    for (int32_t l = 0; l < L; ++l) {
        if (closed_manual[l] || (closed_mask[l] >> c & 1)) {
            out[l] = INF;
        } else {
            out[l] = net.length[l] / veff[l] + (qeff[l] > 0 ? qp[l] / qeff[l] : 0.0);
        }
    }
}

void Engine::queue_counts(int32_t* qcount, double* qpcu) const {
    const double t1 = (double)step_k * dt;
    for (int32_t l = 0; l < net.n_links; ++l) {
        int32_t c = 0;
        double p = 0.0;
        for (int32_t v = head[l]; v != -1; v = vnext[v]) {
            if (t_ready[v] > t1) break;
            ++c;
            p += pcu[cls[v]];
        }
        qcount[l] = c;
        qpcu[l] = p;
    }
}

// Storage check for one whole vehicle of p PCU: the link holds at most k_j L, N_up + p <= N_down + k_j L
// in whole vehicles at this moment. The lagged LTM receiving condition (the backward wave,
// N_up <= N_down(t + dt - L/w) + k_j L) acts on the continuous counts through R_j (step() part 2):
// checking it again on whole counts refused a whole vehicle whenever less than one vehicle of
// space was left, which at capacity flow (R = q dt < 1 vehicle) cost 0.5 % of a merge's capacity.
// A link whose whole storage k_j L is smaller than the vehicle (a 3 m junction connector holds
// 0.45 PCU at k_j = 0.15 PCU/m) still takes it once it is empty, i.e. its storage is max(k_j L, p):
// without this a car could never enter such a link and everything routed over it stood at its
// upstream end for ever (the Tam Kỳ bundle has 28 links shorter than one car at jam density).
bool Engine::has_room(int32_t j, double p) const {
    return Nup[j] + p <= Ndown[j] + std::max(net.kjam[j] * net.length[j], p) + EPS;
}

// The part of the step [t, t + dt) in which link i has green at its downstream node: returns its
// share of the step (1 without a signal) and sets ta, tb to its first and last instants. Phases and
// the start-up lost time need not be multiples of dt: a step that holds the end of a green gets
// that fraction of the step's capacity, so the long-run discharge is (green - l1) x capacity for
// any dt (judged at the step start, dt = 2 s gave 23 steps = 46 s of green per 45 s phase).
// Start-up lost time l1 (Highway Capacity Manual, signalized intersections: HCM 2010 ch. 18, HCM
// 6th ed. ch. 19; default 2.0 s there): the queue starts to discharge l1 after the start of green,
// at the unchanged saturation flow (effective green = green - l1). Only where the phase changes (a
// node with a single phase never stops its traffic).
double Engine::green_part(int32_t i, double t, double& ta, double& tb) const {
    ta = t;
    tb = t + dt;
    const int32_t g = net.group[i];
    if (g < 0) return 1.0;
    const int32_t n = net.to[i];
    const int32_t p0 = net.sig_ptr[n], p1 = net.sig_ptr[n + 1];
    if (p1 <= p0) return 1.0;
    if (g >= p1 - p0) return 0.0;
    const double C = net.sig_end[p1 - 1];
    double ws = g == 0 ? 0.0 : net.sig_end[p0 + g - 1];
    const double we = net.sig_end[p0 + g];
    if (startup_lost_s > 0.0 && p1 - p0 > 1) ws += startup_lost_s;
    if (!(we > ws)) return 0.0;
    const double off = net.sig_offset[n];
    const double a0 = t + off, a1 = a0 + dt;  // the step in cycle time; windows [ws, we) + k C
    double tot = 0.0, first = INF, last = -INF;
    for (double k = std::floor((a0 - we) / C) + 1.0; k * C + ws < a1 - EPS; k += 1.0) {
        const double lo = std::max(a0, k * C + ws), hi = std::min(a1, k * C + we);
        if (hi > lo + EPS) {
            tot += hi - lo;
            first = std::min(first, lo);
            last = std::max(last, hi);
        }
    }
    if (!(tot > EPS)) return 0.0;
    ta = first - off;
    tb = last - off;
    return std::min(tot / dt, 1.0);
}

// ---------------------------------------------------------------- trips and routes
int64_t Engine::add(const int32_t* o, const int32_t* d, const double* dep, const uint8_t* c, const uint8_t* inf,
                    int64_t n) {
    const int64_t first = n_vehicles();
    const int64_t N = first + n;
    cls.resize(N);
    state.resize(N, SCHEDULED);
    informed.resize(N);
    origin.resize(N);
    dest.resize(N);
    cur.resize(N, -1);
    vnext.resize(N, -1);
    r_off.resize(N, 0);
    r_len.resize(N, 0);
    r_pos.resize(N, 0);
    log_cur.resize(N, -1);
    depart.resize(N);
    arrive.resize(N, std::numeric_limits<double>::quiet_NaN());
    t_enter.resize(N, std::numeric_limits<double>::quiet_NaN());
    t_ready.resize(N, std::numeric_limits<double>::quiet_NaN());
    t_loss.resize(N, 0.0);
    acc_carry.resize(N, 0.0);
    std::vector<int32_t> vs(n);
    for (int64_t k = 0; k < n; ++k) {
        const int64_t v = first + k;
        cls[v] = c[k];
        informed[v] = inf[k];
        origin[v] = o[k];
        dest[v] = d[k];
        depart[v] = dep[k];
        vs[k] = (int32_t)v;
    }
    std::vector<int32_t> toroute = vs;
    reroute(toroute);
    // merge into the pending list, sorted by (depart, id)
    pending.erase(pending.begin(), pending.begin() + pend_ptr);
    pend_ptr = 0;
    auto by_time = [&](int32_t a, int32_t b) {
        return depart[a] < depart[b] || (depart[a] == depart[b] && a < b);
    };
    std::sort(vs.begin(), vs.end(), by_time);
    const size_t mid = pending.size();
    pending.insert(pending.end(), vs.begin(), vs.end());
    std::inplace_merge(pending.begin(), pending.begin() + mid, pending.end(), by_time);
    return first;
}

void Engine::write_route(int32_t v, int32_t prefix_link, int32_t start, const int32_t* next_link,
                         const double* dist) {
    const int64_t off = (int64_t)pool.size();
    if (prefix_link >= 0) pool.push_back(prefix_link);
    if (start != dest[v] && dist[start] < INF) {
        for (int32_t u = start; u != dest[v]; u = net.to[next_link[u]]) pool.push_back(next_link[u]);
    }
    r_off[v] = (int32_t)off;
    r_len[v] = (int32_t)((int64_t)pool.size() - off);
    r_pos[v] = 0;
}

// Reroutes vehicles from the node ahead of them (the downstream node of their current link, or
// their origin when not yet on a link). One many-to-one tree per (destination, class), computed in
// parallel; routes are written in vehicle order, so results do not depend on the thread count.
void Engine::reroute(std::vector<int32_t>& vehs) {
    if (vehs.empty()) return;
    const int32_t L = net.n_links, N = net.n_nodes;
    std::vector<int64_t> keys(vehs.size());
    for (size_t k = 0; k < vehs.size(); ++k) keys[k] = (int64_t)dest[vehs[k]] * N_CLASSES + cls[vehs[k]];
    std::vector<int64_t> uk(keys);
    std::sort(uk.begin(), uk.end());
    uk.erase(std::unique(uk.begin(), uk.end()), uk.end());
    bool need[N_CLASSES] = {false, false, false, false, false};
    for (int64_t key : uk) need[key % N_CLASSES] = true;
    std::vector<double> cost((size_t)N_CLASSES * L, INF);
    for (int c = 0; c < N_CLASSES; ++c)
        if (need[c]) class_cost(c, cost.data() + (size_t)c * L);
    // waiting vehicles change point queue if their first link changes: unlink them first
    std::vector<uint8_t> was_waiting(vehs.size(), 0);
    std::vector<int32_t> wl;
    for (size_t k = 0; k < vehs.size(); ++k)
        if (state[vehs[k]] == WAITING) {
            was_waiting[k] = 1;
            wl.push_back(pool[r_off[vehs[k]] + r_pos[vehs[k]]]);
        }
    if (!wl.empty()) {
        std::sort(wl.begin(), wl.end());
        wl.erase(std::unique(wl.begin(), wl.end()), wl.end());
        std::vector<uint8_t> moving(n_vehicles(), 0);
        for (size_t k = 0; k < vehs.size(); ++k)
            if (was_waiting[k]) moving[vehs[k]] = 1;
        for (int32_t j : wl) {
            int32_t v = wait_head[j], h = -1, tl = -1, cnt = 0;
            while (v != -1) {
                const int32_t nx = vnext[v];
                if (!moving[v]) {
                    if (tl == -1) h = v; else vnext[tl] = v;
                    tl = v;
                    ++cnt;
                }
                v = nx;
            }
            if (tl != -1) vnext[tl] = -1;
            wait_head[j] = h;
            wait_tail[j] = tl;
            nwait[j] = cnt;
        }
        for (size_t k = 0; k < vehs.size(); ++k)
            if (was_waiting[k]) n_waiting--;
    }
    // trees in chunks (memory: chunk x nodes)
    const int64_t G = (int64_t)uk.size();
    const int64_t CH = 256;
    std::vector<int32_t> order(vehs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
    size_t op = 0;
    for (int64_t g0 = 0; g0 < G; g0 += CH) {
        const int64_t g1 = std::min(G, g0 + CH);
        const int64_t ng = g1 - g0;
        std::vector<double> dist((size_t)ng * N);
        std::vector<int32_t> nxt((size_t)ng * N), near((size_t)ng * N);
#ifdef TWIN_HAVE_OPENMP
        const int nth = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (ng > 1 && N * ng > 20000)
#endif
        for (int64_t g = 0; g < ng; ++g) {
            const int64_t key = uk[g0 + g];
            const int32_t d = (int32_t)(key / N_CLASSES);
            const int c = (int)(key % N_CLASSES);
            tree_to(net, cost.data() + (size_t)c * L, &d, 1, dist.data() + g * N, nxt.data() + g * N,
                    near.data() + g * N);
        }
        // sequential route writing, in vehicle order within each group
        std::vector<std::pair<int32_t, int32_t>> batch;  // (vehicle, group)
        while (op < order.size() && keys[order[op]] < (g1 < G ? uk[g1] : std::numeric_limits<int64_t>::max())) {
            const int32_t k = order[op];
            const int64_t g = std::lower_bound(uk.begin() + g0, uk.begin() + g1, keys[k]) - uk.begin() - g0;
            batch.push_back({k, (int32_t)g});
            ++op;
        }
        std::sort(batch.begin(), batch.end());
        for (auto [k, g] : batch) {
            const int32_t v = vehs[k];
            const double* dg = dist.data() + (size_t)g * N;
            const int32_t* ng2 = nxt.data() + (size_t)g * N;
            ++n_reroutes;
            if (state[v] == ON_LINK) {
                const int32_t c0 = cur[v];
                write_route(v, c0, net.to[c0], ng2, dg);
            } else {
                write_route(v, -1, origin[v], ng2, dg);
                if (was_waiting[k]) {
                    state[v] = SCHEDULED;  // re-queued below
                    if (r_len[v] == 0) {
                        state[v] = STRANDED;
                        n_stranded++;
                    } else {
                        state[v] = WAITING;
                        n_waiting++;
                        wait_push(v, pool[r_off[v]]);
                    }
                }
            }
        }
    }
}

void Engine::reroute_informed() {
    std::vector<int32_t> vs;
    for (int32_t v = 0; v < (int32_t)n_vehicles(); ++v)
        if (informed[v] && (state[v] == ON_LINK || state[v] == WAITING)) vs.push_back(v);
    reroute(vs);
}

// ---------------------------------------------------------------- link FIFO helpers
void Engine::wait_push(int32_t v, int32_t j) {
    vnext[v] = -1;
    if (wait_tail[j] == -1) wait_head[j] = v; else vnext[wait_tail[j]] = v;
    wait_tail[j] = v;
    nwait[j]++;
}

// Acceleration after a stop (individual vehicles; off when accel[c] is INF). A vehicle that was held
// before entering link j (at a node: it crossed later than it could have at its link speed, because
// of a red, a queue ahead or no supply downstream; at its origin: it entered later than it departed)
// starts on j from a stop, or from a reduced speed if it was held only briefly. Against the flying
// start of the first-order model it loses the time a constant-acceleration start to the link's
// current (flood-reduced) free speed v costs, v / (2 a) (distance v^2 / (2 a) driven at v / 2 on
// average), capped by the time it was held: loss = min(held, v / (2 a)). The loss is added to its
// earliest exit time from j (t_ready), so only that vehicle is slower: FIFO order on j, the flows of
// the node model and every node and link capacity are unchanged (a queue that discharges at
// capacity still does; its vehicles reach the next node later). Held 0: exactly the engine without
// acceleration. Sources of the class defaults: twin/traffic/model.py (ACCEL_MPS2) and the README.
void Engine::push_link(int32_t v, int32_t j, double te, double held) {
    vnext[v] = -1;
    if (tail[j] == -1) head[j] = v; else vnext[tail[j]] = v;
    tail[j] = v;
    nveh[j]++;
    if (cls[v] == CLS_EMERGENCY) nemerg[j]++;
    cur[v] = j;
    t_enter[v] = te;
    t_ready[v] = te + net.length[j] / veff[j];
    double want = acc_carry[v];  // the rest of a start begun on an earlier (short) link
    if (held > EPS) {
        const double a = accel[cls[v]];
        if (a < INF) {
            want = std::max(want, std::min(held, veff[j] / (2.0 * a)));
            n_accel_starts++;
        }
    }
    double loss = 0.0;
    if (want > 0.0) {
        // a link takes at most floor(L / (w dt)) dt - dt of it (39 s on a 300 m link, 1 s on a 20 m
        // one at dt = 1 s), the rest carries on to the next links (a car needs v^2 / (2 a) = 37 m to
        // reach 50 km/h): its history can then be shifted before it is read (see shift_history),
        // so a short link fed at capacity keeps its capacity
        const double cap = std::max(0.0, (std::floor(net.length[j] / (net.w[j] * dt) + 1e-9) - 1.0) * dt);
        loss = std::min(want, cap);
        acc_carry[v] = want - loss;
    }
    t_loss[v] = loss;
    if (loss > 0.0) t_ready[v] += loss;
    const double p = pcu[cls[v]];
    Nup[j] += p;
    entries_total[j]++;
    if (record) {
        log_cur[v] = (int32_t)log_veh.size();
        log_veh.push_back(v);
        log_link.push_back(j);
        log_tin.push_back(te);
        log_tout.push_back(std::numeric_limits<double>::quiet_NaN());
    }
}

void Engine::pop_head(int32_t i) { unlink(i, -1); }

// Removes the vehicle after `prev` (the head when prev == -1) from link i, counting it out.
void Engine::unlink(int32_t i, int32_t prev) {
    const int32_t v = prev == -1 ? head[i] : vnext[prev];
    const int32_t nx = vnext[v];
    if (prev == -1) {
        head[i] = nx;
        head_since[i] = (double)step_k * dt;  // the next vehicle becomes the head at the start of this step
    } else {
        vnext[prev] = nx;
    }
    if (tail[i] == v) tail[i] = prev;
    vnext[v] = -1;
    nveh[i]--;
    if (cls[v] == CLS_EMERGENCY) nemerg[i]--;
    Ndown[i] += pcu[cls[v]];
    exits_total[i]++;
}

// The backward wave of the receiving flow (step() part 2) reads the continuous N_down of the link
// L/w - dt in the past. A vehicle's acceleration loss is an individual delay, not a density: at
// capacity flow the LTM storage condition is exactly tight (q (L/v + L/w) = k_j L), so counting the
// late exits of accelerating vehicles there would cut the capacity of every link fed from a queue
// (measured: 1,145 instead of 1,169 vehicles in 30 min out of a 600 m link fed from an origin
// queue). The history the backward wave reads is therefore that of a flying start: a link whose
// last vehicle left `shift` seconds late because of its loss (exit_shift) gets, for the boundaries
// k with k dt + shift in the step just ended, N_down(k) = max(N_down(k), N_down(k dt + shift))
// interpolated linearly in the step: the actual counts shifted back by the loss. In a steady stream
// with one loss this is the flying-start count exactly, so capacities do not change (tests:
// test_discretisation.py unchanged, test_acceleration.py for 20, 100 and 600 m links). It is exact
// when the shifted boundaries are written before they are read, shift <= floor(L / (w dt)) dt - dt:
// push_link caps the loss per link at that and carries the rest to the next links.
// exit_shift: the vehicle's loss, less the time it then waited at the stop line beyond one capacity
// headway (p / q; within a headway it is the link's own stream, which a flying start would have
// shifted in time as a whole). A vehicle that waited longer stood in a queue or at a red, where a
// flying start would have waited until the same moment: the shift shrinks by that wait, so queues
// and spill-back see the actual counts (the bottleneck queue tail keeps -1.53 m/s; with the full
// loss as shift it ran at -1.34 m/s).
double Engine::exit_shift(int32_t v, int32_t i, double te) const {
    const double l = t_loss[v];
    if (!(l > 0.0)) return 0.0;
    const double wait = te - t_ready[v] - pcu[cls[v]] / std::max(qeff[i], 1e-12);
    return wait > 0.0 ? std::max(0.0, l - wait) : l;
}

void Engine::shift_history(int32_t l, double d0, double d1) {
    const double sh = shift[l];
    const int64_t H = hist_len[l];
    const double t1 = (double)step_k * dt;
    double* hb = hist.data() + hist_off[l];
    const int64_t klo = std::max<int64_t>(step_k - H + 2, 0);
    for (int64_t k = (int64_t)std::floor((t1 - dt - sh) / dt); k <= step_k - 1; ++k) {
        if (k < klo) continue;
        const double fr = ((double)k * dt + sh - (t1 - dt)) / dt;
        if (!(fr > 0.0) || fr > 1.0) continue;
        double& h = hb[k % H];
        h = std::max(h, d0 + (d1 - d0) * fr);
    }
}

void Engine::finish(int32_t v, int32_t i, double te, uint8_t st) {
    // the vehicle leaves the network at the downstream node of link i (arrived or stranded)
    state[v] = st;
    cur[v] = st == ARRIVED ? -1 : i;  // a stranded vehicle stays parked at the end of link i
    n_onlink--;
    if (st == ARRIVED) {
        arrive[v] = te;
        n_arrived++;
    } else {
        n_stranded++;
    }
}

void Engine::depart_vehicle(int32_t v, double t) {
    if (state[v] != SCHEDULED) return;
    n_departed++;
    if (origin[v] == dest[v]) {
        state[v] = ARRIVED;
        arrive[v] = depart[v];
        n_arrived++;
        return;
    }
    if (r_len[v] == 0) {
        state[v] = STRANDED;
        n_stranded++;
        return;
    }
    state[v] = WAITING;
    n_waiting++;
    wait_push(v, pool[r_off[v]]);
}

// How long vehicle v was held at the end of its link when it crosses at te: te less the earliest time
// it could have crossed, i.e. its arrival at the stop line at its link speed (t_ready), and not
// before the first step boundary after it entered the link (a vehicle leaves a link at the earliest
// in the step after the one it entered in: on a link shorter than dt * v that step delay is
// discretisation, not a stop).
double Engine::held_at_node(int32_t v, double te) const {
    double k = std::floor(t_enter[v] / dt);
    if ((k + 1.0) * dt <= t_enter[v]) k += 1.0;  // floor below an exact multiple by rounding
    const double earliest = std::max(t_ready[v], (k + 1.0) * dt);
    return te - earliest;
}

// The time vehicle v leaves link i when the continuous outflow lets it go at t: not before it
// reaches the link end. With acceleration on, also not before the vehicle that left the link before
// it (last_exit): a follower that entered with a flying start catches up with a leader still
// accelerating and cannot pass it; the wait counts as held at the node. Without acceleration the
// crossing times within a step are as before (two approaches of a node can time their crossings
// within a step in either order, so entry and exit times on a link can differ in order by less
// than a step; the order of the vehicles on the link is FIFO either way).
double Engine::exit_time(int32_t v, int32_t i, double t) const {
    const double te = std::max(t_ready[v], t);
    return accel_on ? std::max(te, last_exit[i]) : te;
}

// Moves the ready head vehicle v of link i across the node; false if its next link has no room.
bool Engine::try_move(int32_t v, int32_t i, double t, int32_t prev) {
    const double te = exit_time(v, i, t);
    const double p = pcu[cls[v]];
    if (r_pos[v] + 1 >= r_len[v]) {
        shift[i] = exit_shift(v, i, te);
        last_exit[i] = te;
        unlink(i, prev);
        if (record) log_tout[log_cur[v]] = te;
        finish(v, i, te, net.to[i] == dest[v] ? ARRIVED : STRANDED);
        return true;
    }
    int32_t j = pool[r_off[v] + r_pos[v] + 1];
    if (closed_manual[j] || (closed_mask[j] >> cls[v] & 1)) {
        std::vector<int32_t> one{v};
        reroute(one);
        if (r_len[v] <= 1) {  // no open route: parks at this node
            last_exit[i] = te;
            unlink(i, prev);
            if (record) log_tout[log_cur[v]] = te;
            finish(v, i, te, STRANDED);
            return true;
        }
        j = pool[r_off[v] + 1];
    }
    if (!has_room(j, p)) return false;
    const double held = held_at_node(v, te);
    shift[i] = exit_shift(v, i, te);
    last_exit[i] = te;
    unlink(i, prev);
    if (record) log_tout[log_cur[v]] = te;
    r_pos[v]++;
    push_link(v, j, te, held);
    return true;
}

// Tampère et al. (2011) general first-order node model with capacity-proportional priorities.
// S: nin x nout1 sending flows by turn (last column: the sink of arriving vehicles, unconstrained),
// Si: totals, Cq: priorities (capacities), R: receiving flows (nout1 - 1); q: totals per incoming
// link (each incoming link's turns scale together: FIFO). Rt and act are scratch.
void node_model(int nin, int nout1, const double* S, const double* Si, const double* Cq, const double* R,
                double* q, double* Rt, uint8_t* act) {
    const int nout = nout1 - 1;
    for (int a = 0; a < nin; ++a) {
        q[a] = 0.0;
        act[a] = Si[a] > EPS;
    }
    for (int b = 0; b < nout; ++b) Rt[b] = R[b];
    for (int it = 0; it <= nin; ++it) {
        int best_b = -1;
        double best = INF;
        for (int b = 0; b < nout; ++b) {
            double den = 0.0;
            for (int a = 0; a < nin; ++a)
                if (act[a] && S[a * nout1 + b] > 0.0) den += Cq[a] * S[a * nout1 + b] / Si[a];
            if (den <= 0.0) continue;
            const double ab = std::max(Rt[b], 0.0) / den;
            if (ab < best) {
                best = ab;
                best_b = b;
            }
        }
        if (best_b < 0) {
            for (int a = 0; a < nin; ++a)
                if (act[a]) q[a] = Si[a], act[a] = 0;
            break;
        }
        bool any = false;
        for (int a = 0; a < nin; ++a) {
            if (!act[a] || !(S[a * nout1 + best_b] > 0.0)) continue;
            if (Si[a] <= best * Cq[a]) {
                q[a] = Si[a];
                for (int b = 0; b < nout; ++b) Rt[b] -= S[a * nout1 + b];
                act[a] = 0;
                any = true;
            }
        }
        if (!any) {
            for (int a = 0; a < nin; ++a) {
                if (!act[a] || !(S[a * nout1 + best_b] > 0.0)) continue;
                const double f = best * Cq[a] / Si[a];
                q[a] = best * Cq[a];
                for (int b = 0; b < nout; ++b) Rt[b] -= f * S[a * nout1 + b];
                act[a] = 0;
            }
        }
        bool left = false;
        for (int a = 0; a < nin; ++a) left |= act[a] != 0;
        if (!left) break;
    }
}

void Engine::tampere(int nin, int nout1) {
    node_model(nin, nout1, S.data(), Si.data(), Cq.data(), R.data(), q.data(), Rt.data(), act.data());
}

void Engine::process_node(int32_t n, double t, double t1) {
    const int32_t p0 = net.in_ptr[n], p1 = net.in_ptr[n + 1];
    const int nin = p1 - p0;
    if (nin == 0) return;
    bool any = false;
    for (int32_t p = p0; p < p1; ++p) {
        const int32_t i = net.in_idx[p];
        any |= head[i] != -1 || rel_credit[i] < -EPS;
    }
    if (!any) return;
    auto ready = [&](int32_t v) { return t_enter[v] < t && t_ready[v] <= t1; };
    // emergency vehicles at the head cross first, whatever the signal; with emergency_overtake the
    // traffic ahead pulls aside, so any emergency vehicle that reached the link end crosses
    for (int32_t p = p0; p < p1; ++p) {
        const int32_t i = net.in_idx[p];
        if (nemerg[i] == 0) continue;
        if (emergency_overtake) {
            int32_t prev = -1, v = head[i];
            while (v != -1) {
                const int32_t nx = vnext[v];
                if (cls[v] == CLS_EMERGENCY && ready(v) && try_move(v, i, t, prev)) {
                    v = nx;
                    continue;
                }
                prev = v;
                v = nx;
            }
        } else {
            while (head[i] != -1 && cls[head[i]] == CLS_EMERGENCY && ready(head[i])) {
                if (!try_move(head[i], i, t)) break;
            }
        }
    }
    const int32_t o0 = net.out_ptr[n];
    const int nout = net.out_ptr[n + 1] - o0;
    const int nout1 = nout + 1;
    std::fill(S.begin(), S.begin() + (size_t)nin * nout1, 0.0);
    bool anyS = false;
    for (int a = 0; a < nin; ++a) {
        const int32_t i = net.in_idx[p0 + a];
        Si[a] = 0.0;
        Cq[a] = std::max(qeff[i], 1e-12);
        // Sending flow S_i = min(N_up(t + dt - L/v) - N_down(t), q dt) of the continuous model, with
        // N_down(t) the continuous count: the rest of the last released vehicle (the release debt,
        // -rel_credit, towards debt_to) plus the vehicles that reach the link end by t + dt. Red:
        // nothing crosses and a crossing vehicle's debt waits for the next green (the continuous
        // outflow stops); vehicles whose trip ends at this node still leave at the link end, in
        // FIFO order and within the link's capacity (they do not cross the junction: UXsim ends a
        // trip at the head of the last link whatever the signal, SUMO at the end of the last edge).
        // A step that is green only in part sends that share of the capacity.
        gfr[a] = green_part(i, t, gta[a], gtb[a]);
        const bool g = gfr[a] > 0.0;
        if (!g && rel_credit[i] < -EPS && debt_to[i] >= 0) continue;
        const double lim = qeff[i] * dt * (g ? gfr[a] : 1.0);
        double cum = 0.0;
        if (rel_credit[i] < -EPS) {
            const int32_t j = debt_to[i];
            if (j >= 0 && (closed_manual[j] || net.from[j] != n)) {
                rel_credit[i] = 0.0;  // the rest of a vehicle on a link closed since: nothing left to send
            } else {
                const int b = j >= 0 ? net.out_pos[j] : nout;
                const double take = std::min(-rel_credit[i], lim);
                S[a * nout1 + b] += take;
                cum += take;
            }
        }
        for (int32_t v = head[i]; v != -1 && cum < lim && ready(v); v = vnext[v]) {
            int b = nout;  // sink
            if (r_pos[v] + 1 < r_len[v]) {
                if (!g || t_ready[v] > gtb[a]) break;  // crosses only in the green part
                b = net.out_pos[pool[r_off[v] + r_pos[v] + 1]];
            }
            const double take = std::min(pcu[cls[v]], lim - cum);
            S[a * nout1 + b] += take;
            cum += take;
        }
        Si[a] = cum;
        anyS |= cum > 0.0;
    }
    if (!anyS) return;
    for (int b = 0; b < nout; ++b) {
        const int32_t j = net.out_idx[o0 + b];
        if (closed_manual[j]) {
            R[b] = 0.0;
            continue;
        }
        R[b] = Rlink[j];
    }
    tampere(nin, nout1);
    // planned inflow per outgoing link (FIFO: each incoming link's turns scale together)
    for (int a = 0; a < nin; ++a) {
        if (!(Si[a] > 0.0) || !(q[a] > 0.0)) continue;
        const double f = q[a] / Si[a];
        for (int b = 0; b < nout; ++b) Rlink[net.out_idx[o0 + b]] -= f * S[a * nout1 + b];
    }
    // Release whole vehicles in FIFO order against the continuous outflow q: rel_credit = D - X,
    // the continuous cumulative outflow D minus the whole vehicles released X. A vehicle goes when
    // D passes its front (credit > 0), at the time it does so within the step (flows are constant
    // within a step), and never before it reaches the link end; what it still owes (credit < 0) is
    // paid by the next steps' flow, across red phases too. Over any period the released count is
    // D within one vehicle, so discharge is capacity x green time, not rounded up per green.
    // Start from a rotating link for fairness.
    const int rot = (int)(step_k % nin);
    for (int aa = 0; aa < nin; ++aa) {
        const int a = (aa + rot) % nin;
        const int32_t i = net.in_idx[p0 + a];
        if (Si[a] <= 0.0 || !(q[a] > 0.0)) continue;
        double& cr = rel_credit[i];
        cr += q[a];
        bool blocked = false;
        const bool g = gfr[a] > 0.0;
        const double s0 = g ? gta[a] : t, s1 = g ? gtb[a] : t + dt;  // when the flow q runs
        while (head[i] != -1 && cr > EPS && ready(head[i])) {
            const int32_t v = head[i];
            if (r_pos[v] + 1 < r_len[v] && (!g || t_ready[v] > gtb[a])) break;  // red: only trips ending here
            const double p = pcu[cls[v]];
            // D rises linearly over [s0, s1) by q and reaches X (the front of v) at the share
            // (X - D(t)) / q of it, with X - D(t) = q - cr (cr = D(t) + q - X here)
            const double front = std::min(std::max(0.0, q[a] - cr) / q[a], 1.0);
            if (!try_move(v, i, s0 + front * (s1 - s0))) {
                blocked = true;
                break;
            }
            debt_to[i] = (state[v] == ON_LINK && cur[v] != i) ? cur[v] : -1;
            cr -= p;
        }
        cr = blocked ? std::min(cr, 1.0) : std::min(cr, 0.0);
    }
}

void Engine::step(int64_t n_steps) {
    const int32_t L = net.n_links;
    for (int64_t s = 0; s < n_steps; ++s) {
        if (reroute_every > 0 && step_k > 0 && step_k % reroute_every == 0) reroute_informed();
        const double t = (double)step_k * dt, t1 = t + dt;
        // 1. departures (routed now by current travel times when route_on_departure is set)
        int64_t pe = pend_ptr;
        while (pe < (int64_t)pending.size() && depart[pending[pe]] < t1) ++pe;
        if (route_on_departure && pe > pend_ptr) {
            std::vector<int32_t> vs(pending.begin() + pend_ptr, pending.begin() + pe);
            reroute(vs);
        } else if (pe > pend_ptr) {  // trips still without a route try again as they leave (reroute_incomplete)
            std::vector<int32_t> vs;
            for (int64_t k = pend_ptr; k < pe; ++k) {
                const int32_t v = pending[k];
                if (state[v] == SCHEDULED && r_len[v] == 0 && origin[v] != dest[v]) vs.push_back(v);
            }
            reroute(vs);
        }
        for (; pend_ptr < pe; ++pend_ptr) depart_vehicle(pending[pend_ptr], t);
        // 2. links: receiving flow R_j = min(N_down(t + dt - L/w) + k_j L - N_up(t), q dt) of the
        //    continuous model, on continuous counts. Whole vehicles enter a link when the
        //    continuous inflow reaches their front, so the continuous N_up is Nup less what the
        //    vehicles that entered last still owe (the release debts of the upstream links towards
        //    j and the debt of the origin queue of j), and the continuous N_down is Ndown less the
        //    link's own release debt (kept in hist). With whole counts on both sides a link fed at
        //    capacity sees R < q dt in some steps and loses capacity (0.8 % at one lane).
        for (int32_t l = 0; l < L; ++l) uc_adj[l] = std::max(-recv_credit[l], 0.0);
        for (int32_t l = 0; l < L; ++l)
            if (rel_credit[l] < 0.0 && debt_to[l] >= 0) uc_adj[debt_to[l]] -= rel_credit[l];
        for (int32_t l = 0; l < L; ++l) {
            ndlag[l] = ndown_at(l, (double)(step_k + 1) - net.length[l] / (net.w[l] * dt));
            const double space = ndlag[l] + net.kjam[l] * net.length[l] - (Nup[l] - uc_adj[l]);
            Rlink[l] = closed_manual[l] ? 0.0 : std::max(0.0, std::min(space, qeff[l] * dt));
        }
        // 3. nodes
        for (int32_t n = 0; n < net.n_nodes; ++n) process_node(n, t, t1);
        // 3b. SUMO-style teleports of vehicles blocked at a link head for too long (off by default)
        if (teleport_steps > 0) teleport_blocked(t, t1);
        // 4. origin point queues into what supply is left
        for (int32_t j = 0; j < L; ++j) {
            if (wait_head[j] == -1) {  // idle: the supply of this step repays earlier overshoot
                recv_credit[j] = std::min(recv_credit[j] + std::max(Rlink[j], 0.0), 0.0);
                continue;
            }
            // supply the nodes left unused this step, plus the fraction carried from earlier steps;
            // as at the nodes, a vehicle enters when the continuous inflow passes its front, at the
            // time within the step it does so (never before its departure)
            const double Rl = std::max(Rlink[j], 0.0);
            recv_credit[j] = std::min(recv_credit[j] + Rl, Rl);
            while (wait_head[j] != -1) {
                const int32_t v = wait_head[j];
                const double p = pcu[cls[v]];
                if (closed_manual[j] || (closed_mask[j] >> cls[v] & 1)) break;  // rerouted on closure
                if (!(recv_credit[j] > EPS)) break;
                if (!has_room(j, p)) break;
                wait_head[j] = vnext[v];
                if (wait_head[j] == -1) wait_tail[j] = -1;
                nwait[j]--;
                n_waiting--;
                n_onlink++;
                state[v] = ON_LINK;
                r_pos[v] = 0;
                const double front = Rl > 0.0 ? std::min(std::max(0.0, Rl - recv_credit[j]) / Rl, 1.0) : 0.0;
                recv_credit[j] -= p;
                const double te = std::max(depart[v], t + front * dt);
                push_link(v, j, te, te - depart[v]);  // the departure itself is a flying start
            }
        }
        // 5. history of the continuous N_down at t + dt
        ++step_k;
        for (int32_t l = 0; l < L; ++l) {
            const double d1 = Ndown[l] + std::min(rel_credit[l], 0.0);
            hist[hist_off[l] + step_k % hist_len[l]] = d1;
            if (shift[l] > 0.0) shift_history(l, dcont_prev[l], d1);  // acceleration losses only
            dcont_prev[l] = d1;
        }
    }
}

// SUMO-style teleport (SUMO option --time-to-teleport, default 300 s there; off here). The head
// vehicle of a link that reached the link end and has stood at the head for teleport_steps steps
// (because its next link is full: strict FIFO gridlock, e.g. a cycle of full links) jumps to the
// first link of its remaining route that has room for it (has_room: the storage bound still holds
// on every link), as SUMO does. The links it skips count as driven at their current free-flow
// time: it reaches the end of the landing link at te + sum(L/v skipped) + L/v. If no link of the
// remaining route has room it keeps waiting and tries again next step; a closed link ends the
// search (closures reroute at the node as usual). Runs after all nodes, in link order, so results
// stay independent of the node visiting order. Conservation is untouched: the vehicle stays on the
// network (exits and entries are counted on the links it leaves and lands on).
void Engine::teleport_blocked(double t, double t1) {
    const double T = (double)teleport_steps * dt;
    for (int32_t i = 0; i < net.n_links; ++i) {
        const int32_t v = head[i];
        if (v == -1 || !(t_enter[v] < t && t_ready[v] <= t1)) continue;
        if (r_pos[v] + 1 >= r_len[v]) continue;  // arriving: the sink never blocks
        const double since = std::max(head_since[i], t_ready[v]);
        if (t1 - since < T - EPS) continue;
        const double p = pcu[cls[v]];
        double skipped_s = 0.0;
        int32_t land = -1;
        for (int32_t k = r_pos[v] + 1; k < r_len[v]; ++k) {
            const int32_t j = pool[r_off[v] + k];
            if (closed_manual[j] || (closed_mask[j] >> cls[v] & 1)) break;
            if (has_room(j, p)) {
                land = k;
                break;
            }
            skipped_s += net.length[j] / veff[j];
        }
        if (land < 0) continue;
        const double te = exit_time(v, i, t);
        const double held = held_at_node(v, te);
        shift[i] = exit_shift(v, i, te);
        last_exit[i] = te;
        unlink(i, -1);
        if (record) {
            log_tout[log_cur[v]] = te;
            for (int32_t k = r_pos[v] + 1; k < land; ++k) {  // skipped links: in the log, zero duration
                log_veh.push_back(v);
                log_link.push_back(pool[r_off[v] + k]);
                log_tin.push_back(te);
                log_tout.push_back(te);
            }
        }
        r_pos[v] = land;
        push_link(v, pool[r_off[v] + land], te, held);
        t_ready[v] += skipped_s;
        n_teleports++;
    }
}

// ---------------------------------------------------------------- flood and closures
void Engine::refresh_ready(int32_t l, double vold, double t) {
    // vehicles on a link whose speed changes keep the fraction of the link already covered; an
    // acceleration loss (t_loss) is spent first, at the start of the link, and what is left of it
    // is kept (with no loss this is the rule without acceleration, to the bit)
    (void)vold;
    const double L = net.length[l];
    for (int32_t v = head[l]; v != -1; v = vnext[v]) {
        const double loss = t_loss[v];
        if (t_enter[v] >= t) {
            t_ready[v] = t_enter[v] + loss + L / veff[l];
        } else {
            const double span = t_ready[v] - t_enter[v] - loss;
            const double done = span > 0 ? std::min(1.0, std::max(0.0, t - t_enter[v] - loss) / span) : 1.0;
            t_ready[v] = t + (1.0 - done) * L / veff[l] + std::max(0.0, t_enter[v] + loss - t);
        }
    }
}

void Engine::stall_on_link(int32_t l, double t) {
    // vehicles of a class the link is now closed to (set_closed_mask) stall in place and become incidents
    int32_t v = head[l], h = -1, tl = -1;
    while (v != -1) {
        const int32_t nx = vnext[v];
        if (closed_mask[l] >> cls[v] & 1) {
            state[v] = STALLED;
            cur[v] = l;  // where it stalled
            arrive[v] = std::numeric_limits<double>::quiet_NaN();
            nveh[l]--;
            if (cls[v] == CLS_EMERGENCY) nemerg[l]--;
            Ndown[l] += pcu[cls[v]];
            exits_total[l]++;
            n_onlink--;
            n_stalled++;
            if (record) log_tout[log_cur[v]] = t;
        } else {
            if (tl == -1) h = v; else vnext[tl] = v;
            tl = v;
        }
        v = nx;
    }
    if (tl != -1) vnext[tl] = -1;
    if (h != head[l]) head_since[l] = t;
    head[l] = h;
    tail[l] = tl;
}

static bool route_hits(const Engine& e, int32_t v, const std::vector<uint8_t>& newly) {
    const int32_t start = e.state[v] == ON_LINK ? e.r_pos[v] + 1 : e.r_pos[v];
    for (int32_t k = start; k < e.r_len[v]; ++k) {
        const int32_t l = e.pool[e.r_off[v] + k];
        if (newly[l] && (e.closed_manual[l] || (e.closed_mask[l] >> e.cls[v] & 1))) return true;
    }
    return false;
}

// Flooded free speed of each link (from twin.traffic.flood, at most vfree); the capacity follows
// the triangular diagram with the same jam density and backward wave speed.
void Engine::set_link_speeds(const double* v) {
    const int32_t L = net.n_links;
    const double t = (double)step_k * dt;
    for (int32_t l = 0; l < L; ++l) {
        const double vold = veff[l];
        const double vn = v[l];
        if (vn != vold) {
            veff[l] = vn;
            const double wv = net.w[l], kj = net.kjam[l];
            qeff[l] = vn * wv * kj / (vn + wv);
            refresh_ready(l, vold, t);
        }
    }
}

// Closures by class (flood water): vehicles of a class newly closed out of a link stall in place,
// routes through newly closed links change, vehicles without a route try again when links open.
void Engine::set_closed_mask(const uint8_t* m) {
    const int32_t L = net.n_links;
    const double t = (double)step_k * dt;
    std::vector<uint8_t> newly(L, 0);
    bool anynew = false, anyopen = false;
    for (int32_t l = 0; l < L; ++l) {
        const uint8_t mask = m[l], old = closed_mask[l];
        closed_mask[l] = mask;
        if (mask & ~old) {
            newly[l] = 1;
            anynew = true;
            stall_on_link(l, t);
        }
        if (old & ~mask) anyopen = true;
    }
    if (anyopen) reroute_incomplete();
    if (!anynew) return;
    std::vector<int32_t> vs;
    for (int32_t v = 0; v < (int32_t)n_vehicles(); ++v) {
        const uint8_t s = state[v];
        if ((s == SCHEDULED || s == WAITING || s == ON_LINK) && route_hits(*this, v, newly)) vs.push_back(v);
    }
    reroute(vs);
}

// Changes the number of lanes (contraflow, lane closures): capacity and storage scale with the
// lanes, the backward wave speed does not.
void Engine::set_lanes(const int32_t* ids, const double* lanes, int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
        const int32_t l = ids[k];
        const double f = lanes[k] / net.lanes[l];
        net.lanes[l] = lanes[k];
        net.qcap[l] *= f;
        net.kjam[l] *= f;
        qeff[l] = veff[l] * net.w[l] * net.kjam[l] / (veff[l] + net.w[l]);
        if (veff[l] == net.vfree[l]) qeff[l] = net.qcap[l];
    }
}

// After a link opens: vehicles on the network without an open route to their destination try again.
// Trips not yet departed that have no route try again when they leave (step(): with the travel times
// then), not at every opening before: in a long flood, thousands of future trips whose origin or
// destination is cut off were rerouted each time any link reopened (~0.5 s a coupling step of the 48-h
// Tam Ky run; the route they leave with is the same search, run once, later).
void Engine::reroute_incomplete() {
    std::vector<int32_t> vs;
    for (int32_t v = 0; v < (int32_t)n_vehicles(); ++v) {
        if (state[v] == ON_LINK && net.to[pool[r_off[v] + r_len[v] - 1]] != dest[v]) vs.push_back(v);
    }
    reroute(vs);
}

void Engine::set_closed(const int32_t* ids, int64_t n, bool closed) {
    const int32_t L = net.n_links;
    std::vector<uint8_t> newly(L, 0);
    bool anynew = false;
    for (int64_t k = 0; k < n; ++k) {
        const int32_t l = ids[k];
        if (closed && !closed_manual[l]) {
            newly[l] = 1;
            anynew = true;
        }
        closed_manual[l] = closed ? 1 : 0;
    }
    if (!closed) {
        reroute_incomplete();
        return;
    }
    if (!anynew) return;
    std::vector<int32_t> vs;
    for (int32_t v = 0; v < (int32_t)n_vehicles(); ++v) {
        const uint8_t s = state[v];
        if ((s == SCHEDULED || s == WAITING || s == ON_LINK) && route_hits(*this, v, newly)) vs.push_back(v);
    }
    reroute(vs);
}

}  // namespace traffic
}  // namespace twin
