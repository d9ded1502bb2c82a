// Python face of the traffic engine: validates every array at the boundary (GIL held), then
// releases the GIL for stepping and routing. Registered by register_traffic().
#include <cstring>
#include <memory>
#include <sstream>

#include "common.hpp"
#include "modules.hpp"
#include "traffic_engine.hpp"

namespace twin {

using traffic::Engine;
using traffic::INF;
using traffic::N_CLASSES;

namespace {

template <class T>
py::array_t<T> to_np(const std::vector<T>& v) {
    py::array_t<T> a((py::ssize_t)v.size());
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

template <class T>
void from_np(const py::dict& d, const char* name, std::vector<T>& v) {
    if (!d.contains(name)) fail(std::string("traffic state: missing field '") + name + "'");
    py::array a = py::array::ensure(d[name]);
    if (!a || !a.dtype().equal(py::dtype::of<T>()))
        fail(std::string("traffic state: field '") + name + "' has the wrong dtype");
    auto c = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
    v.assign(c.data(), c.data() + c.size());
}

template <class F>
void visit_state(Engine& e, F&& f) {
    f("lanes", e.net.lanes); f("qcap", e.net.qcap); f("kjam", e.net.kjam);
    f("veff", e.veff); f("qeff", e.qeff);
    f("closed_manual", e.closed_manual); f("closed_mask", e.closed_mask);
    f("Nup", e.Nup); f("Ndown", e.Ndown); f("rel_credit", e.rel_credit); f("recv_credit", e.recv_credit);
    f("ndlag", e.ndlag);
    f("head_since", e.head_since);
    f("head", e.head); f("tail", e.tail); f("wait_head", e.wait_head); f("wait_tail", e.wait_tail);
    f("nveh", e.nveh); f("nwait", e.nwait); f("nemerg", e.nemerg); f("exits_total", e.exits_total); f("entries_total", e.entries_total);
    f("hist", e.hist); f("debt_to", e.debt_to);
    f("shift", e.shift); f("dcont_prev", e.dcont_prev); f("last_exit", e.last_exit);
    f("cls", e.cls); f("state", e.state); f("informed", e.informed); f("origin", e.origin); f("dest", e.dest);
    f("cur", e.cur); f("vnext", e.vnext); f("r_off", e.r_off); f("r_len", e.r_len); f("r_pos", e.r_pos);
    f("log_cur", e.log_cur); f("depart", e.depart); f("arrive", e.arrive); f("t_enter", e.t_enter);
    f("t_ready", e.t_ready); f("t_loss", e.t_loss); f("acc_carry", e.acc_carry); f("pool", e.pool); f("pending", e.pending);
    f("log_veh", e.log_veh); f("log_link", e.log_link); f("log_tin", e.log_tin); f("log_tout", e.log_tout);
}

#define TWIN_TRAFFIC_SCALARS(X) \
    X(step_k) X(pend_ptr) X(n_departed) X(n_arrived) X(n_stalled) X(n_stranded) X(n_waiting) X(n_onlink) \
    X(n_reroutes) X(reroute_every) X(route_on_departure) X(emergency_overtake) X(n_teleports) X(teleport_steps) X(startup_lost_s) \
    X(n_accel_starts)

void check_ids(const carray<int32_t>& a, int32_t n, const char* name, const char* what) {
    const int32_t* p = a.data();
    for (py::ssize_t k = 0; k < a.size(); ++k)
        if (p[k] < 0 || p[k] >= n) {
            std::ostringstream s;
            s << name << ": value " << p[k] << " at index " << k << " is not a valid " << what << " id (0.."
              << n - 1 << ")";
            fail(s.str());
        }
}

template <class T>
void check_positive(const carray<T>& a, const char* name) {
    const T* p = a.data();
    for (py::ssize_t k = 0; k < a.size(); ++k)
        if (!(p[k] > 0) || !std::isfinite((double)p[k])) {
            std::ostringstream s;
            s << name << ": value " << p[k] << " at index " << k << " must be finite and > 0";
            fail(s.str());
        }
}

// ---- semantic validation of a restored state (set_state) ----
// A damaged checkpoint must be a ValueError naming the field, never a crash or a hang: every index
// the engine follows is in range, every linked list (vehicles on a link, origin queues) is acyclic
// and matches its counts, every time and count is finite and bounded, and what the engine writes
// through an index (log_cur of a vehicle on a link) points where it should.
[[noreturn]] void bad_state(const char* field, int64_t index, const std::string& value, const std::string& why) {
    std::ostringstream s;
    s << "traffic state: field '" << field << "'";
    if (index >= 0) s << " value " << value << " at index " << index;
    else s << " value " << value;
    s << ": " << why;
    fail(s.str());
}

template <class T>
std::string vstr(T v) {
    std::ostringstream s;
    s << +v;
    return s.str();
}

void validate_state(const Engine& e) {
    using namespace traffic;
    const int64_t L = e.net.n_links, V = (int64_t)e.cls.size(), G = (int64_t)e.log_veh.size();
    constexpr int64_t kBig = int64_t(1) << 62;  // counters: far from overflow
    auto finite = [](const char* f, const std::vector<double>& a, bool nonneg) {
        for (size_t i = 0; i < a.size(); ++i)
            if (!std::isfinite(a[i]) || (nonneg && a[i] < 0))
                bad_state(f, (int64_t)i, vstr(a[i]), nonneg ? "must be finite and >= 0" : "must be finite");
    };
    auto positive = [](const char* f, const std::vector<double>& a) {
        for (size_t i = 0; i < a.size(); ++i)
            if (!(std::isfinite(a[i]) && a[i] > 0)) bad_state(f, (int64_t)i, vstr(a[i]), "must be finite and > 0");
    };
    auto nan_or_finite = [](const char* f, const std::vector<double>& a) {
        for (size_t i = 0; i < a.size(); ++i)
            if (std::isinf(a[i])) bad_state(f, (int64_t)i, vstr(a[i]), "must be finite (or NaN: not yet)");
    };
    auto counter = [&](const char* f, int64_t v, int64_t hi) {
        if (v < 0 || v > hi) bad_state(f, -1, vstr(v), "must be in 0.." + std::to_string(hi));
    };
    // scalars
    counter("step_k", e.step_k, int64_t(1) << 52);
    counter("pend_ptr", e.pend_ptr, (int64_t)e.pending.size());
    counter("reroute_every", e.reroute_every, kBig);
    counter("teleport_steps", e.teleport_steps, kBig);
    counter("route_on_departure", e.route_on_departure, 1);
    counter("emergency_overtake", e.emergency_overtake, 1);
    counter("n_reroutes", e.n_reroutes, kBig);
    counter("n_teleports", e.n_teleports, kBig);
    counter("n_accel_starts", e.n_accel_starts, kBig);
    if (!(std::isfinite(e.startup_lost_s) && e.startup_lost_s >= 0))
        bad_state("startup_lost_s", -1, vstr(e.startup_lost_s), "must be finite and >= 0");
    // links
    positive("lanes", e.net.lanes);
    positive("qcap", e.net.qcap);
    positive("kjam", e.net.kjam);
    positive("veff", e.veff);
    finite("qeff", e.qeff, true);
    finite("Nup", e.Nup, true);
    finite("Ndown", e.Ndown, true);
    finite("rel_credit", e.rel_credit, false);
    finite("recv_credit", e.recv_credit, false);
    finite("ndlag", e.ndlag, false);
    finite("head_since", e.head_since, false);
    finite("hist", e.hist, false);
    finite("dcont_prev", e.dcont_prev, false);
    for (int64_t l = 0; l < L; ++l) {
        if (e.closed_manual[l] > 1) bad_state("closed_manual", l, vstr(e.closed_manual[l]), "must be 0 or 1");
        if (e.closed_mask[l] >> N_CLASSES) bad_state("closed_mask", l, vstr(e.closed_mask[l]), "has bits beyond the 5 classes");
        // the acceleration shift of the last exit is capped by the link's history (push_link)
        const double smax = (double)e.hist_len[l] * e.dt;
        if (!(e.shift[l] >= 0 && e.shift[l] <= smax))
            bad_state("shift", l, vstr(e.shift[l]), "must be in [0, " + vstr(smax) + "] s (the link's history)");
        if (std::isnan(e.last_exit[l]) || e.last_exit[l] == INF)
            bad_state("last_exit", l, vstr(e.last_exit[l]), "must be finite (or -inf: none yet)");
        counter("exits_total", e.exits_total[l], kBig);
        counter("entries_total", e.entries_total[l], kBig);
    }
    // trips
    finite("depart", e.depart, false);
    nan_or_finite("arrive", e.arrive);
    nan_or_finite("t_enter", e.t_enter);
    nan_or_finite("t_ready", e.t_ready);
    finite("t_loss", e.t_loss, true);
    finite("acc_carry", e.acc_carry, true);
    nan_or_finite("log_tin", e.log_tin);
    nan_or_finite("log_tout", e.log_tout);
    int64_t cnt[6] = {0, 0, 0, 0, 0, 0};
    for (int64_t v = 0; v < V; ++v) {
        if (e.state[v] > STRANDED) bad_state("state", v, vstr(e.state[v]), "is not a trip state (0..5)");
        if (e.informed[v] > 1) bad_state("informed", v, vstr(e.informed[v]), "must be 0 or 1");
        cnt[e.state[v]]++;
        // a route is a connected path of links
        const int32_t* rt = e.pool.data() + e.r_off[v];
        for (int32_t k = 1; k < e.r_len[v]; ++k)
            if (e.net.from[rt[k]] != e.net.to[rt[k - 1]])
                bad_state("pool", (int64_t)e.r_off[v] + k, vstr(rt[k]),
                          "trip " + std::to_string(v) + "'s route is not a connected path there");
        if (e.state[v] == ON_LINK || e.state[v] == WAITING) {
            if (e.r_len[v] < 1) bad_state("r_len", v, vstr(e.r_len[v]), "a trip on a link or in a queue needs a route");
        }
        if (e.state[v] == ON_LINK) {
            if (e.cur[v] < 0 || rt[e.r_pos[v]] != e.cur[v])
                bad_state("cur", v, vstr(e.cur[v]), "a trip on a link must be on link pool[r_off + r_pos] = " +
                                                     std::to_string(e.r_len[v] > 0 ? rt[e.r_pos[v]] : -1));
            if (!std::isfinite(e.t_enter[v]) || !std::isfinite(e.t_ready[v]))
                bad_state("t_enter", v, vstr(e.t_enter[v]) + " (t_ready " + vstr(e.t_ready[v]) + ")",
                          "a trip on a link needs finite entry and ready times");
            // its acceleration loss becomes the link's history shift when it leaves (capped as shift is)
            const double lmax = (double)e.hist_len[e.cur[v]] * e.dt;
            if (!(e.t_loss[v] <= lmax))
                bad_state("t_loss", v, vstr(e.t_loss[v]), "must be at most " + vstr(lmax) + " s (the link's history)");
            if (e.record) {
                const int32_t g = e.log_cur[v];
                if (g < 0 || g >= G || e.log_veh[g] != v || e.log_link[g] != e.cur[v])
                    bad_state("log_cur", v, vstr(g),
                              "a trip on a link must point at its row of the link log (log_veh = trip, log_link = cur)");
            }
        }
        // a trip not yet on its first link is at the start of its route (its origin queue is pool[r_off])
        if ((e.state[v] == WAITING || e.state[v] == SCHEDULED) && e.r_pos[v] != 0)
            bad_state("r_pos", v, vstr(e.r_pos[v]), "a trip not yet on a link is at the start of its route (0)");
    }
    // counters agree with the trip states
    counter("n_departed", e.n_departed, V);
    if (e.n_departed != V - cnt[SCHEDULED])
        bad_state("n_departed", -1, vstr(e.n_departed), std::to_string(V - cnt[SCHEDULED]) + " trips have departed");
    const std::pair<const char*, std::pair<int64_t, int>> agree[] = {
        {"n_arrived", {e.n_arrived, ARRIVED}}, {"n_stalled", {e.n_stalled, STALLED}},
        {"n_stranded", {e.n_stranded, STRANDED}}, {"n_waiting", {e.n_waiting, WAITING}},
        {"n_onlink", {e.n_onlink, ON_LINK}}};
    for (const auto& [f, vs] : agree)
        if (vs.first != cnt[vs.second])
            bad_state(f, -1, vstr(vs.first), std::to_string(cnt[vs.second]) + " trips are in that state");
    // the FIFO lists: acyclic, each trip in at most one, ends and counts that match
    std::vector<uint8_t> seen((size_t)V, 0);
    auto walk = [&](int64_t l, int32_t h, int32_t t, int32_t n, bool on_link) {
        const char* hf = on_link ? "head" : "wait_head";
        int32_t v = h, prev = -1, k = 0, ne = 0;
        while (v != -1) {
            if (k >= n || seen[v])
                bad_state(hf, l, vstr(h), std::string("the list of link ") + std::to_string(l) +
                                              " is longer than its count " + std::to_string(n) + " or loops");
            seen[v] = on_link ? 1 : 2;
            if (on_link ? (e.state[v] != ON_LINK || e.cur[v] != l)
                        : (e.state[v] != WAITING || e.pool[e.r_off[v]] != l))
                bad_state(hf, l, vstr(h), "trip " + std::to_string(v) + " in the list of link " + std::to_string(l) +
                                              (on_link ? " is not on that link" : " is not waiting to enter it"));
            ne += e.cls[v] == CLS_EMERGENCY;
            prev = v;
            v = e.vnext[v];
            ++k;
        }
        if (k != n)
            bad_state(on_link ? "nveh" : "nwait", l, vstr(n), "the list holds " + std::to_string(k) + " trips");
        if (t != prev) bad_state(on_link ? "tail" : "wait_tail", l, vstr(t), "the list ends at " + std::to_string(prev));
        if (on_link && ne != e.nemerg[l])
            bad_state("nemerg", l, vstr(e.nemerg[l]), "the list holds " + std::to_string(ne) + " emergency vehicles");
    };
    for (int64_t l = 0; l < L; ++l) {
        walk(l, e.head[l], e.tail[l], e.nveh[l], true);
        walk(l, e.wait_head[l], e.wait_tail[l], e.nwait[l], false);
    }
    for (int64_t v = 0; v < V; ++v) {
        if (e.state[v] == ON_LINK && seen[v] != 1)
            bad_state("state", v, vstr(e.state[v]), "the trip is on a link but not in that link's list");
        if (e.state[v] == WAITING && seen[v] != 2)
            bad_state("state", v, vstr(e.state[v]), "the trip waits to enter a link but is in no origin queue");
    }
}

int check_class(int c) {
    if (c < 0 || c >= N_CLASSES) fail("vehicle_class: code " + std::to_string(c) + " is not in 0.." +
                                      std::to_string(N_CLASSES - 1));
    return c;
}

}  // namespace

void register_traffic(py::module_& m) {
    m.def(
        "traffic_node_model",
        [](carray<double> sending, carray<double> priority, carray<double> receiving) {
            require(sending.ndim() == 2, "sending: expected a 2-D (incoming, outgoing + 1) array, got shape " +
                                             shape_str(sending));
            const int nin = (int)sending.shape(0), nout1 = (int)sending.shape(1);
            require(nout1 >= 1, "sending: needs at least the sink column");
            require_size(priority, nin, "priority");
            require_size(receiving, nout1 - 1, "receiving");
            require_nonnegative(sending, "sending");
            check_positive(priority, "priority");
            require_nonnegative(receiving, "receiving");
            std::vector<double> Si(nin, 0.0), Rt(nout1, 0.0);
            std::vector<uint8_t> act(nin);
            for (int a = 0; a < nin; ++a)
                for (int b = 0; b < nout1; ++b) Si[a] += sending.data()[a * nout1 + b];
            py::array_t<double> q(nin);
            traffic::node_model(nin, nout1, sending.data(), Si.data(), priority.data(), receiving.data(),
                                q.mutable_data(), Rt.data(), act.data());
            return q;
        },
        py::arg("sending").noconvert(), py::arg("priority").noconvert(), py::arg("receiving").noconvert(),
        "Tampère et al. (2011) node model: flows out of each incoming link given sending flows by turn "
        "(last column: vehicles ending their trip), priorities (capacities) and receiving flows.");

    py::class_<Engine>(m, "TrafficEngine",
                       "Link transmission model with individual vehicles (private: use twin.traffic.TrafficModel).")
        .def(py::init([](carray<int32_t> from, carray<int32_t> to, carray<double> length, carray<double> lanes,
                         carray<double> vfree, carray<double> cap_per_lane, carray<double> kjam_per_lane,
                         carray<double> x, carray<double> y, carray<int32_t> sig_ptr, carray<double> sig_dur,
                         carray<double> sig_offset, carray<int32_t> group, double dt, carray<double> pcu) {
                 const py::ssize_t L = from.size(), N = x.size();
                 require(L < INT32_MAX && N < INT32_MAX, "network too large for int32 ids");
                 require(dt > 0 && std::isfinite(dt), "dt: must be finite and > 0, got " + std::to_string(dt));
                 require_size(to, L, "links.to");
                 require_size(length, L, "links.length_m");
                 require_size(lanes, L, "links.lanes");
                 require_size(vfree, L, "links.free_speed_mps");
                 require_size(cap_per_lane, L, "links.capacity_vph_per_lane");
                 require_size(kjam_per_lane, L, "links.jam_density_vpm_per_lane");
                 require_size(group, L, "links.signal_group");
                 require_size(y, N, "nodes.y");
                 require_size(sig_ptr, N + 1, "nodes.signal_phases_s (pointer)");
                 require_size(sig_offset, N, "nodes.signal_offset_s");
                 require_size(pcu, N_CLASSES, "pcu");
                 require(N > 0, "nodes: the network has no nodes");
                 check_ids(from, (int32_t)N, "links.from", "node");
                 check_ids(to, (int32_t)N, "links.to", "node");
                 check_positive(length, "links.length_m");
                 check_positive(lanes, "links.lanes");
                 check_positive(vfree, "links.free_speed_mps");
                 check_positive(cap_per_lane, "links.capacity_vph_per_lane");
                 check_positive(kjam_per_lane, "links.jam_density_vpm_per_lane");
                 check_positive(pcu, "pcu");
                 require_finite(x, "nodes.x");
                 require_finite(y, "nodes.y");
                 require_finite(sig_offset, "nodes.signal_offset_s");
                 check_positive(sig_dur, "nodes.signal_phases_s");
                 traffic::Network net;
                 net.n_nodes = (int32_t)N;
                 net.n_links = (int32_t)L;
                 net.from.assign(from.data(), from.data() + L);
                 net.to.assign(to.data(), to.data() + L);
                 net.length.assign(length.data(), length.data() + L);
                 net.lanes.assign(lanes.data(), lanes.data() + L);
                 net.vfree.assign(vfree.data(), vfree.data() + L);
                 net.x.assign(x.data(), x.data() + N);
                 net.y.assign(y.data(), y.data() + N);
                 net.qcap.resize(L);
                 net.kjam.resize(L);
                 net.w.resize(L);
                 for (py::ssize_t l = 0; l < L; ++l) {
                     const double qs = cap_per_lane.data()[l] / 3600.0, kj = kjam_per_lane.data()[l];
                     const double vf = vfree.data()[l];
                     if (!(qs < vf * kj)) {
                         std::ostringstream s;
                         s << "links.capacity_vph_per_lane: value " << cap_per_lane.data()[l] << " at link " << l
                           << " must be below free_speed x jam density = " << vf * kj * 3600.0
                           << " veh/h/lane (a triangular diagram needs a finite backward wave speed)";
                         fail(s.str());
                     }
                     net.qcap[l] = qs * lanes.data()[l];
                     net.kjam[l] = kj * lanes.data()[l];
                     net.w[l] = qs * vf / (vf * kj - qs);
                 }
                 // The backward wave reads each link's continuous N_down L / (w dt) steps back: a ring buffer of
                 // ceil(L / (w dt)) + 2 slots per link. Computed in double and int64, bounded before anything is
                 // allocated, so a long link or a tiny dt is an error naming the input, not an int overflow or
                 // a std::length_error.
                 {
                     double total = 0.0, worst = -1.0;
                     py::ssize_t wl = 0;
                     for (py::ssize_t l = 0; l < L; ++l) {
                         const double slots = std::ceil(length.data()[l] / (net.w[l] * dt)) + 2.0;
                         if (!(slots <= worst)) {  // larger (or not a number)
                             worst = slots;
                             wl = l;
                         }
                         total += slots;
                     }
                     auto human = [](double bytes) {
                         const char* u[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
                         int k = 0;
                         while (bytes >= 1000.0 && k < 6) bytes /= 1000.0, ++k;
                         std::ostringstream s;
                         s.precision(3);
                         s << bytes << " " << u[k];
                         return s.str();
                     };
                     const double kMaxSlots = traffic::kMaxHistSlots;
                     if (L > 0 && (!(worst <= (double)INT32_MAX) || !(total <= kMaxSlots))) {
                         std::ostringstream s;
                         s.precision(3);
                         s << "link " << wl << " length_m=" << length.data()[wl] << " with dt=" << dt
                           << " (backward wave speed " << net.w[wl] << " m/s) needs " << worst
                           << " history slots (" << human(worst * 8.0) << "); the network needs " << total
                           << " slots (" << human(total * 8.0) << "); the limit is " << kMaxSlots << " slots ("
                           << human(kMaxSlots * 8.0) << ") in all and " << INT32_MAX
                           << " per link: use a larger dt or shorter links";
                         fail(s.str());
                     }
                 }
                 const int32_t* sp = sig_ptr.data();
                 require(sp[0] == 0 && sp[N] == (int32_t)sig_dur.size(), "nodes.signal_phases_s: bad pointer array");
                 for (py::ssize_t n = 0; n < N; ++n)
                     require(sp[n + 1] >= sp[n], "nodes.signal_phases_s: bad pointer array");
                 net.sig_ptr.assign(sp, sp + N + 1);
                 net.sig_end.assign(sig_dur.data(), sig_dur.data() + sig_dur.size());
                 for (py::ssize_t n = 0; n < N; ++n) {
                     double c = 0;
                     for (int32_t p = sp[n]; p < sp[n + 1]; ++p) net.sig_end[p] = (c += sig_dur.data()[p]);
                 }
                 net.sig_offset.assign(sig_offset.data(), sig_offset.data() + N);
                 net.group.assign(group.data(), group.data() + L);
                 for (py::ssize_t l = 0; l < L; ++l) {
                     const int32_t g = group.data()[l], n = to.data()[l];
                     if (g >= 0 && g >= sp[n + 1] - sp[n]) {
                         std::ostringstream s;
                         s << "links.signal_group: value " << g << " at link " << l << " but node " << n << " has "
                           << sp[n + 1] - sp[n] << " signal phases";
                         fail(s.str());
                     }
                 }
                 auto e = std::make_unique<Engine>();
                 for (int c = 0; c < N_CLASSES; ++c) e->pcu[c] = pcu.data()[c];
                 e->init(std::move(net), dt);
                 return e;
             }),
             py::arg("from_").noconvert(), py::arg("to").noconvert(), py::arg("length").noconvert(),
             py::arg("lanes").noconvert(), py::arg("vfree").noconvert(), py::arg("cap_per_lane").noconvert(),
             py::arg("kjam_per_lane").noconvert(), py::arg("x").noconvert(), py::arg("y").noconvert(),
             py::arg("sig_ptr").noconvert(), py::arg("sig_dur").noconvert(), py::arg("sig_offset").noconvert(),
             py::arg("group").noconvert(), py::arg("dt"), py::arg("pcu").noconvert())
        .def("add_trips",
             [](Engine& e, carray<int32_t> o, carray<int32_t> d, carray<double> dep, carray<uint8_t> c,
                carray<uint8_t> inf) {
                 const py::ssize_t n = o.size();
                 require_size(d, n, "trips.destination");
                 require_size(dep, n, "trips.depart_s");
                 require_size(c, n, "trips.vehicle_class");
                 require_size(inf, n, "trips.informed");
                 check_ids(o, e.net.n_nodes, "trips.origin", "node");
                 check_ids(d, e.net.n_nodes, "trips.destination", "node");
                 require_finite(dep, "trips.depart_s");
                 for (py::ssize_t k = 0; k < n; ++k) check_class(c.data()[k]);
                 require((int64_t)e.n_vehicles() + n < INT32_MAX, "too many trips for int32 ids");
                 py::gil_scoped_release nogil;
                 return e.add(o.data(), d.data(), dep.data(), c.data(), inf.data(), n);
             },
             py::arg("origin").noconvert(), py::arg("destination").noconvert(), py::arg("depart_s").noconvert(),
             py::arg("vehicle_class").noconvert(), py::arg("informed").noconvert())
        .def("step",
             [](Engine& e, int64_t n) {
                 require(n >= 0, "n_steps must be >= 0");
                 py::gil_scoped_release nogil;
                 e.step(n);
             },
             py::arg("n_steps"))
        .def("set_link_speeds",
             [](Engine& e, carray<double> v) {
                 require_size(v, e.net.n_links, "speeds_mps");
                 for (py::ssize_t l = 0; l < v.size(); ++l) {
                     const double x = v.data()[l];
                     if (!(x > 0.0 && x <= e.net.vfree[l])) {
                         std::ostringstream s;
                         s << "speeds_mps: value " << x << " at link " << l << " must be in (0, free speed "
                           << e.net.vfree[l] << "] (close a link with set_closed)";
                         fail(s.str());
                     }
                 }
                 py::gil_scoped_release nogil;
                 e.set_link_speeds(v.data());
             },
             py::arg("speeds_mps").noconvert())
        .def("set_closed",
             [](Engine& e, carray<bool> mask) {
                 require(mask.ndim() == 2 && mask.shape(0) == e.net.n_links && mask.shape(1) == N_CLASSES,
                         "closed mask: expected a bool (n_links, " + std::to_string(N_CLASSES) +
                             ") array, got shape " + shape_str(mask));
                 std::vector<uint8_t> bits((size_t)e.net.n_links, 0);
                 const bool* m = mask.data();
                 for (int32_t l = 0; l < e.net.n_links; ++l)
                     for (int c = 0; c < N_CLASSES; ++c)
                         if (m[(size_t)l * N_CLASSES + c]) bits[l] |= (uint8_t)(1u << c);
                 py::gil_scoped_release nogil;
                 e.set_closed_mask(bits.data());
             },
             py::arg("mask").noconvert())
        .def("set_closed",
             [](Engine& e, carray<int32_t> ids, bool closed) {
                 check_ids(ids, e.net.n_links, "ids", "link");
                 py::gil_scoped_release nogil;
                 e.set_closed(ids.data(), ids.size(), closed);
             },
             py::arg("ids").noconvert(), py::arg("closed"))
        .def("set_lanes",
             [](Engine& e, carray<int32_t> ids, carray<double> lanes) {
                 check_ids(ids, e.net.n_links, "ids", "link");
                 require_size(lanes, ids.size(), "lanes");
                 check_positive(lanes, "lanes");
                 py::gil_scoped_release nogil;
                 e.set_lanes(ids.data(), lanes.data(), ids.size());
             },
             py::arg("ids").noconvert(), py::arg("lanes").noconvert())
        .def("class_cost",
             [](const Engine& e, int c) {
                 check_class(c);
                 py::array_t<double> out(e.net.n_links);
                 double* p = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     e.class_cost(c, p);
                 }
                 return out;
             },
             py::arg("vehicle_class"))
        .def("shortest_path",
             [](const Engine& e, int32_t o, int32_t d, int c) {
                 check_class(c);
                 require(o >= 0 && o < e.net.n_nodes, "origin: node " + std::to_string(o) + " does not exist");
                 require(d >= 0 && d < e.net.n_nodes, "destination: node " + std::to_string(d) + " does not exist");
                 std::vector<double> cost(e.net.n_links);
                 std::vector<int32_t> links;
                 double time = INF;
                 {
                     py::gil_scoped_release nogil;
                     e.class_cost(c, cost.data());
                     traffic::astar(e.net, cost.data(), o, d, links, time);
                 }
                 return py::make_tuple(to_np(links), time);
             },
             py::arg("origin"), py::arg("destination"), py::arg("vehicle_class"))
        .def("tree",
             [](const Engine& e, carray<int32_t> dests, int c) {
                 check_class(c);
                 check_ids(dests, e.net.n_nodes, "destinations", "node");
                 const int32_t N = e.net.n_nodes;
                 py::array_t<double> dist(N);
                 py::array_t<int32_t> nxt(N), near(N);
                 double* dp = dist.mutable_data();
                 int32_t* np_ = nxt.mutable_data();
                 int32_t* rp = near.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     std::vector<double> cost(e.net.n_links);
                     e.class_cost(c, cost.data());
                     traffic::tree_to(e.net, cost.data(), dests.data(), (int)dests.size(), dp, np_, rp);
                 }
                 return py::make_tuple(dist, nxt, near);
             },
             py::arg("destinations").noconvert(), py::arg("vehicle_class"))
        .def("queue_counts",
             [](const Engine& e) {
                 py::array_t<int32_t> qc(e.net.n_links);
                 py::array_t<double> qp(e.net.n_links);
                 e.queue_counts(qc.mutable_data(), qp.mutable_data());
                 return py::make_tuple(qc, qp);
             })
        .def("reroute",
             [](Engine& e, carray<int32_t> ids) {
                 check_ids(ids, (int32_t)e.n_vehicles(), "trip_ids", "trip");
                 std::vector<int32_t> vs;
                 for (py::ssize_t k = 0; k < ids.size(); ++k) {
                     const uint8_t s = e.state[ids.data()[k]];
                     if (s == traffic::SCHEDULED || s == traffic::WAITING || s == traffic::ON_LINK)
                         vs.push_back(ids.data()[k]);
                 }
                 py::gil_scoped_release nogil;
                 e.reroute(vs);
             },
             py::arg("trip_ids").noconvert())
        .def_property(
            "reroute_every", [](const Engine& e) { return e.reroute_every; },
            [](Engine& e, int64_t v) {
                require(v >= 0, "reroute_every: must be >= 0");
                e.reroute_every = v;
            })
        .def_property(
            "startup_lost_s", [](const Engine& e) { return e.startup_lost_s; },
            [](Engine& e, double v) {
                require(std::isfinite(v) && v >= 0.0, "startup_lost_time_s: must be finite and >= 0");
                e.startup_lost_s = v;
            })
        .def_property(
            "accel_mps2",
            [](const Engine& e) {
                py::array_t<double> a(N_CLASSES);
                for (int c = 0; c < N_CLASSES; ++c) a.mutable_data()[c] = e.accel[c];
                return a;
            },
            [](Engine& e, carray<double> a) {
                require_size(a, N_CLASSES, "accel_mps2");
                for (int c = 0; c < N_CLASSES; ++c) {
                    const double v = a.data()[c];
                    if (!(v > 0.0) || std::isnan(v)) {
                        std::ostringstream s;
                        s << "accel_mps2: value " << v << " for class " << c
                          << " must be > 0 (inf: no acceleration loss)";
                        fail(s.str());
                    }
                }
                e.accel_on = 0;
                for (int c = 0; c < N_CLASSES; ++c) {
                    e.accel[c] = a.data()[c];
                    if (e.accel[c] < traffic::INF) e.accel_on = 1;
                }
            })
        .def_property(
            "teleport_steps", [](const Engine& e) { return e.teleport_steps; },
            [](Engine& e, int64_t v) {
                require(v >= 0, "teleport_steps: must be >= 0");
                e.teleport_steps = v;
            })
        .def_property(
            "emergency_overtake", [](const Engine& e) { return e.emergency_overtake != 0; },
            [](Engine& e, bool v) { e.emergency_overtake = v ? 1 : 0; })
        .def_property(
            "route_on_departure", [](const Engine& e) { return e.route_on_departure != 0; },
            [](Engine& e, bool v) { e.route_on_departure = v ? 1 : 0; })
        .def_property(
            "threads", [](const Engine& e) { return e.threads; }, [](Engine& e, int v) { e.threads = v; })
        .def_property(
            "record", [](const Engine& e) { return e.record; },
            [](Engine& e, bool v) {
                // the log row of a trip on a link is written when it enters: switching the log on while
                // trips are on links would leave them without one (and the engine writing through it)
                if (v && !e.record && e.n_onlink > 0)
                    fail("record: the link log can only be switched on while no trip is on a link (" +
                         std::to_string(e.n_onlink) + " are)");
                e.record = v;
            })
        .def_property_readonly("n_vehicles", &Engine::n_vehicles)
        .def_property_readonly("n_links", [](const Engine& e) { return e.net.n_links; })
        .def_property_readonly("n_nodes", [](const Engine& e) { return e.net.n_nodes; })
        .def_property_readonly("step_k", [](const Engine& e) { return e.step_k; })
        .def_readonly("dt", &Engine::dt)
        .def("counts",
             [](const Engine& e) {
                 py::dict d;
#define X(name) d[#name] = e.name;
                 TWIN_TRAFFIC_SCALARS(X)
#undef X
                 return d;
             })
        .def("get",
             [](Engine& e, const std::string& name) {
                 py::object out = py::none();
                 visit_state(e, [&](const char* n, auto& v) {
                     if (name == n) out = to_np(v);
                 });
                 if (out.is_none()) {
                     if (name == "w") out = to_np(e.net.w);
                     else fail("traffic engine: no array named '" + name + "'");
                 }
                 return out;
             },
             py::arg("name"))
        .def("memory_bytes",
             [](Engine& e) {
                 // bytes held per category (capacity of the vectors): the vehicles' own state,
                 // their routes, the link traversal log (the recorded trip table) and the links
                 size_t veh = 0, links = 0;
                 auto cap = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
                 veh = cap(e.cls) + cap(e.state) + cap(e.informed) + cap(e.origin) + cap(e.dest) + cap(e.cur) +
                       cap(e.vnext) + cap(e.r_off) + cap(e.r_len) + cap(e.r_pos) + cap(e.log_cur) +
                       cap(e.depart) + cap(e.arrive) + cap(e.t_enter) + cap(e.t_ready) + cap(e.t_loss) + cap(e.acc_carry) + cap(e.pending);
                 const size_t log = cap(e.log_veh) + cap(e.log_link) + cap(e.log_tin) + cap(e.log_tout);
                 links = cap(e.veff) + cap(e.qeff) + cap(e.closed_manual) + cap(e.closed_mask) +
                         cap(e.Nup) + cap(e.Ndown) + cap(e.rel_credit) + cap(e.recv_credit) + cap(e.ndlag) +
                         cap(e.Rlink) + cap(e.head) + cap(e.tail) + cap(e.wait_head) + cap(e.wait_tail) +
                         cap(e.nveh) + cap(e.nwait) + cap(e.exits_total) + cap(e.entries_total) + cap(e.hist) +
                         cap(e.debt_to) + cap(e.shift) + cap(e.dcont_prev) + cap(e.last_exit);
                 py::dict d;
                 d["vehicles"] = veh;
                 d["routes"] = cap(e.pool);
                 d["log"] = log;
                 d["links"] = links;
                 return d;
             })
        .def("get_state",
             [](Engine& e) {
                 py::dict d;
                 visit_state(e, [&](const char* n, auto& v) { d[n] = to_np(v); });
#define X(name) d[#name] = e.name;
                 TWIN_TRAFFIC_SCALARS(X)
#undef X
                 d["n_links"] = e.net.n_links;
                 d["n_nodes"] = e.net.n_nodes;
                 d["dt"] = e.dt;
                 return d;
             })
        .def("set_state", [](Engine& target, const py::dict& d) {
            Engine e = target;  // load into a copy: a rejected state leaves the model as it was
            for (const char* k : {"n_links", "n_nodes", "dt"})
                if (!d.contains(k)) fail(std::string("traffic state: missing field '") + k + "'");
            try {
                require(d["n_links"].cast<int64_t>() == e.net.n_links && d["n_nodes"].cast<int64_t>() == e.net.n_nodes,
                        "traffic state: saved for a different network");
                require(d["dt"].cast<double>() == e.dt, "traffic state: saved with a different dt");
            } catch (const py::cast_error&) {
                fail("traffic state: n_links, n_nodes and dt must be numbers");
            }
            visit_state(e, [&](const char* n, auto& v) { from_np(d, n, v); });
#define X(name)                                                                                       \
    if (!d.contains(#name)) fail(std::string("traffic state: missing field '") + #name + "'");             \
    try {                                                                                                 \
        e.name = d[#name].cast<decltype(e.name)>();                                                       \
    } catch (const py::cast_error&) {                                                                     \
        fail(std::string("traffic state: field '") + #name + "' must be a number, got " +                  \
             py::repr(d[#name]).cast<std::string>().substr(0, 80));                                       \
    }
            TWIN_TRAFFIC_SCALARS(X)
#undef X
            // consistency, so that a damaged state is an error and never a crash
            const size_t L = (size_t)e.net.n_links, V = e.cls.size(), P = e.pool.size(), G = e.log_veh.size();
            require((int64_t)e.hist.size() == (int64_t)e.hist_off.back(), "traffic state: history size mismatch");
            for (size_t n : {e.net.lanes.size(), e.net.qcap.size(), e.net.kjam.size(), e.veff.size(),
                             e.qeff.size(), e.closed_manual.size(), e.closed_mask.size(), e.Nup.size(),
                             e.Ndown.size(), e.rel_credit.size(), e.recv_credit.size(), e.ndlag.size(),
                             e.head.size(), e.head_since.size(), e.tail.size(), e.wait_head.size(), e.wait_tail.size(), e.nveh.size(),
                             e.nwait.size(), e.nemerg.size(), e.exits_total.size(), e.entries_total.size(), e.debt_to.size(),
                             e.shift.size(), e.dcont_prev.size(), e.last_exit.size()})
                require(n == L, "traffic state: a link array has the wrong length");
            for (size_t n : {e.state.size(), e.informed.size(), e.origin.size(), e.dest.size(), e.cur.size(),
                             e.vnext.size(), e.r_off.size(), e.r_len.size(), e.r_pos.size(), e.log_cur.size(),
                             e.depart.size(), e.arrive.size(), e.t_enter.size(), e.t_ready.size(), e.t_loss.size(), e.acc_carry.size()})
                require(n == V, "traffic state: a trip array has the wrong length");
            for (size_t n : {e.log_link.size(), e.log_tin.size(), e.log_tout.size()})
                require(n == G, "traffic state: a log array has the wrong length");
            auto in_range = [](const std::vector<int32_t>& a, int64_t lo, int64_t hi, const char* what) {
                for (size_t i = 0; i < a.size(); ++i)
                    if (a[i] < lo || a[i] >= hi)
                        bad_state(what, (int64_t)i, std::to_string(a[i]),
                                  "out of range " + std::to_string(lo) + ".." + std::to_string(hi - 1));
            };
            in_range(e.head, -1, (int64_t)V, "head"); in_range(e.tail, -1, (int64_t)V, "tail");
            in_range(e.wait_head, -1, (int64_t)V, "wait_head"); in_range(e.wait_tail, -1, (int64_t)V, "wait_tail");
            in_range(e.vnext, -1, (int64_t)V, "vnext"); in_range(e.cur, -1, (int64_t)L, "cur");
            in_range(e.origin, 0, e.net.n_nodes, "origin"); in_range(e.dest, 0, e.net.n_nodes, "dest");
            in_range(e.pool, 0, (int64_t)L, "pool"); in_range(e.pending, 0, (int64_t)V, "pending");
            in_range(e.log_cur, -1, (int64_t)G, "log_cur"); in_range(e.log_veh, 0, (int64_t)V, "log_veh");
            in_range(e.log_link, 0, (int64_t)L, "log_link"); in_range(e.debt_to, -1, (int64_t)L, "debt_to");
            for (size_t v = 0; v < V; ++v) {
                if (e.r_off[v] < 0 || e.r_len[v] < 0 || (size_t)e.r_off[v] + (size_t)e.r_len[v] > P ||
                    e.r_pos[v] < 0 || (e.r_len[v] > 0 && e.r_pos[v] >= e.r_len[v]) || e.cls[v] >= N_CLASSES)
                    fail("traffic state: trip " + std::to_string(v) + " has an invalid route or class (r_off " +
                         std::to_string(e.r_off[v]) + ", r_len " + std::to_string(e.r_len[v]) + ", r_pos " +
                         std::to_string(e.r_pos[v]) + ", cls " + std::to_string(e.cls[v]) + ", pool size " +
                         std::to_string(P) + ")");
            }
            validate_state(e);  // pend_ptr, step_k and the rest: ranges, lists, counts
            target = std::move(e);
        });
}

}  // namespace twin
