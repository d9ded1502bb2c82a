// Traffic kernels of twin._core: a link transmission model (Yperman 2007) with individual vehicles
// kept in FIFO order on each link, a first-order node model (Tampère et al. 2011, capacity-share
// priorities, i.e. Daganzo's merge), fixed-time signals, emergency priority, flood impact given as
// arrays (per-link flooded free speeds and per-link x class closures, computed by twin.traffic.flood:
// the engine holds no flood physics) and CSR shortest paths.
//
// The engine owns flat std::vectors only (no Python objects); the binding file traffic_bind.cpp
// validates every input with the GIL held and releases the GIL for stepping and routing.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace twin {
namespace traffic {

constexpr int N_CLASSES = 5;  // motorbike, car, bus, truck, emergency
constexpr int CLS_EMERGENCY = 4;
constexpr double INF = std::numeric_limits<double>::infinity();
// Most backward-wave history slots (doubles) a network may hold in all: 2^27 = 1.07 GB, some 100 times
// what 100,000 links of 1 km need at dt = 1 s (checked by the binding before init allocates them).
constexpr int64_t kMaxHistSlots = int64_t(1) << 27;

enum VehState : uint8_t {
    SCHEDULED = 0,  // added, departure time not reached
    WAITING = 1,    // departed, waiting to enter its first link (point queue at the origin)
    ON_LINK = 2,
    ARRIVED = 3,
    STALLED = 4,    // stalled by flood water on a link (an incident)
    STRANDED = 5,   // no open route to the destination: parked at a node
};

// Static road graph: directed links, CSR adjacency both ways, signals.
struct Network {
    int32_t n_nodes = 0, n_links = 0;
    std::vector<int32_t> from, to;
    std::vector<double> length, lanes, vfree, qcap, kjam, w;  // qcap, kjam: all lanes, PCU/s, PCU/m
    std::vector<double> x, y;
    std::vector<int32_t> out_ptr, out_idx, in_ptr, in_idx, out_pos;  // out_pos[l]: index in from-node's out list
    std::vector<int32_t> sig_ptr;     // (n_nodes+1) into sig_end
    std::vector<double> sig_end;      // cumulative phase ends within the cycle
    std::vector<double> sig_offset;   // per node
    std::vector<int32_t> group;       // per link: phase with green at its downstream node, -1 = always
    int max_in = 0, max_out = 0;
    void build_csr();
};

// ---- routing (traffic_routing.cpp) ----
// Many-to-one tree: multi-destination reverse Dijkstra over link costs (INF = closed).
// dist[n] = time from n to the nearest destination, next_link[n] = first link to take, nearest[n]
// = index into dests of that destination (-1 when unreachable).
void tree_to(const Network& net, const double* cost, const int32_t* dests, int nd, double* dist,
             int32_t* next_link, int32_t* nearest);
// One-to-one A* with an admissible straight-line heuristic. Returns false when unreachable.
bool astar(const Network& net, const double* cost, int32_t o, int32_t d, std::vector<int32_t>& links,
           double& time);

// Node model (Tampère et al. 2011, capacity-share priorities); see traffic_engine.cpp.
void node_model(int nin, int nout1, const double* S, const double* Si, const double* Cq, const double* R,
                double* q, double* Rt, uint8_t* act);

// ---- engine (traffic_engine.cpp) ----
class Engine {
public:
    Network net;
    double dt = 1.0;
    int64_t step_k = 0;
    int64_t reroute_every = 0;  // steps between informed reroutes (0 = off)
    int64_t emergency_overtake = 0;  // 1: traffic ahead pulls aside for emergency vehicles
    int64_t route_on_departure = 0;  // 1: route each trip when it departs, by the travel times then
    int64_t teleport_steps = 0;  // SUMO-style time-to-teleport in steps (0 = off), see teleport_blocked()
    double startup_lost_s = 0.0;  // HCM start-up lost time at the start of each green (0 = off)
    int threads = 0;
    double pcu[N_CLASSES] = {0.25, 1.0, 2.5, 2.5, 1.0};
    // Acceleration from a stop per class (m/s^2), INF = off (the first-order flying start). A vehicle
    // held at a node loses min(held, v_next / (2 a)) on the link it enters next (see push_link).
    // The engine default is off; twin.traffic.TrafficModel sets the documented class defaults.
    double accel[N_CLASSES] = {INF, INF, INF, INF, INF};

    // flood and closures, per link: veff = flooded free speed (<= vfree), qeff its triangular capacity
    std::vector<double> veff, qeff;
    std::vector<uint8_t> closed_manual, closed_mask;  // mask bit c: closed to class c
    // link state
    std::vector<double> Nup, Ndown, rel_credit, recv_credit, ndlag, Rlink;  // ndlag: continuous N_down(t + dt - L/w)
    std::vector<double> head_since;  // per link: time its current head vehicle became the head
    std::vector<int32_t> head, tail, wait_head, wait_tail, nveh, nwait, nemerg;
    std::vector<int64_t> exits_total, entries_total;
    std::vector<double> hist;  // ring buffers of the continuous N_down (Ndown less the release debt, see step())
    std::vector<double> shift, dcont_prev;  // per link: acceleration delay of the last exit; continuous N_down at t
    std::vector<double> last_exit;          // per link: time the last vehicle left it
    int64_t accel_on = 0;                   // 1 when some class has a finite acceleration
    std::vector<int32_t> debt_to;  // per link: where the last released vehicle went (link id, -1 = left the network)
    std::vector<int64_t> hist_off;
    std::vector<int32_t> hist_len;
    // vehicles (structure of arrays)
    std::vector<uint8_t> cls, state, informed;
    std::vector<int32_t> origin, dest, cur, vnext, r_off, r_len, r_pos, log_cur;
    std::vector<double> depart, arrive, t_enter, t_ready;
    std::vector<double> t_loss;  // acceleration loss on the current link (s), part of t_ready - t_enter
    std::vector<double> acc_carry;  // acceleration loss still to come on the next links (short links)
    std::vector<int32_t> pool;     // routes (link ids), a vehicle's route is pool[r_off .. r_off+r_len)
    std::vector<int32_t> pending;  // not yet departed, sorted by (depart, id)
    int64_t pend_ptr = 0;
    // link traversal log (the recorded trip table)
    bool record = true;
    std::vector<int32_t> log_veh, log_link;
    std::vector<double> log_tin, log_tout;
    int64_t n_departed = 0, n_arrived = 0, n_stalled = 0, n_stranded = 0, n_waiting = 0, n_onlink = 0;
    int64_t n_reroutes = 0;
    int64_t n_teleports = 0;
    int64_t n_accel_starts = 0;  // link entries that carried an acceleration loss

    void init(Network&& n, double dt_);
    void reset_history();
    int64_t add(const int32_t* o, const int32_t* d, const double* dep, const uint8_t* c, const uint8_t* inf,
                int64_t n);
    void step(int64_t n_steps);
    void set_link_speeds(const double* v);         // per link, in (0, vfree]
    void set_closed_mask(const uint8_t* mask);     // per link, bit c: closed to class c
    void set_closed(const int32_t* ids, int64_t n, bool closed);
    void set_lanes(const int32_t* ids, const double* lanes, int64_t n);
    void class_cost(int c, double* out) const;
    double link_tt(int32_t l) const;
    void reroute(std::vector<int32_t>& vehs);  // from the next node (or origin)
    void reroute_informed();
    void reroute_incomplete();
    double ndown_at(int32_t l, double s) const;
    int64_t n_vehicles() const { return (int64_t)cls.size(); }
    void queue_counts(int32_t* qcount, double* qpcu) const;

private:
    // scratch for the node model
    std::vector<double> S, Si, Cq, R, q, Rt;
    std::vector<double> gta, gtb, gfr;  // per incoming link of a node: green part of the step
    std::vector<double> uc_adj;  // per link: what entered vehicles still owe (continuous N_up = Nup - uc_adj)
    std::vector<uint8_t> act;
    void depart_vehicle(int32_t v, double t);
    void process_node(int32_t n, double t, double t1);
    bool try_move(int32_t v, int32_t i, double t, int32_t prev = -1);
    void unlink(int32_t i, int32_t prev);
    void push_link(int32_t v, int32_t j, double te, double held = 0.0);
    double held_at_node(int32_t v, double te) const;
    void pop_head(int32_t i);
    void shift_history(int32_t l, double d0, double d1);
    double exit_shift(int32_t v, int32_t i, double te) const;
    double exit_time(int32_t v, int32_t i, double t) const;
    void wait_push(int32_t v, int32_t j);
    void finish(int32_t v, int32_t i, double te, uint8_t st);
    double green_part(int32_t i, double t, double& ta, double& tb) const;
    bool has_room(int32_t j, double p) const;
    void teleport_blocked(double t, double t1);
    void tampere(int nin, int nout1);
    void write_route(int32_t v, int32_t prefix_link, int32_t start, const int32_t* next_link, const double* dist);
    void refresh_ready(int32_t l, double vold, double t);
    void stall_on_link(int32_t l, double t);
};

}  // namespace traffic
}  // namespace twin
