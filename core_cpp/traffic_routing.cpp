// Shortest paths over the CSR road graph: many-to-one trees (reverse multi-source Dijkstra) and
// one-to-one A*. Ties are broken by node id through the (cost, node) heap key and strict '<'
// relaxations, so removing a link that no shortest path uses changes nothing (bit-identical).
#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>
#include <utility>

#include "traffic_engine.hpp"

namespace twin {
namespace traffic {

using HeapItem = std::pair<double, int32_t>;
using MinHeap = std::priority_queue<HeapItem, std::vector<HeapItem>, std::greater<HeapItem>>;

void tree_to(const Network& net, const double* cost, const int32_t* dests, int nd, double* dist,
             int32_t* next_link, int32_t* nearest) {
    const int32_t N = net.n_nodes;
    std::fill(dist, dist + N, INF);
    std::fill(next_link, next_link + N, -1);
    std::fill(nearest, nearest + N, -1);
    MinHeap heap;
    for (int k = 0; k < nd; ++k) {
        int32_t d = dests[k];
        if (dist[d] > 0.0) {
            dist[d] = 0.0;
            nearest[d] = k;
            heap.push({0.0, d});
        }
    }
    while (!heap.empty()) {
        auto [du, u] = heap.top();
        heap.pop();
        if (du > dist[u]) continue;
        for (int32_t p = net.in_ptr[u]; p < net.in_ptr[u + 1]; ++p) {
            const int32_t l = net.in_idx[p];
            const double c = cost[l];
            if (!(c < INF)) continue;
            const int32_t v = net.from[l];
            const double nd2 = du + c;
            if (nd2 < dist[v]) {
                dist[v] = nd2;
                next_link[v] = l;
                nearest[v] = nearest[u];
                heap.push({nd2, v});
            }
        }
    }
}

bool astar(const Network& net, const double* cost, int32_t o, int32_t d, std::vector<int32_t>& links,
           double& time) {
    const int32_t N = net.n_nodes;
    links.clear();
    time = INF;
    if (o == d) {
        time = 0.0;
        return true;
    }
    // admissible heuristic: straight-line distance times the smallest time per straight-line metre
    double s_min = INF;
    for (int32_t l = 0; l < net.n_links; ++l) {
        const double c = cost[l];
        if (!(c < INF)) continue;
        const double e = std::hypot(net.x[net.to[l]] - net.x[net.from[l]], net.y[net.to[l]] - net.y[net.from[l]]);
        if (e > 0) s_min = std::min(s_min, c / e);
    }
    if (!(s_min < INF)) s_min = 0.0;
    auto h = [&](int32_t n) { return s_min * std::hypot(net.x[d] - net.x[n], net.y[d] - net.y[n]); };
    std::vector<double> g(N, INF);
    std::vector<int32_t> prev(N, -1);
    std::vector<uint8_t> done(N, 0);
    MinHeap heap;
    g[o] = 0.0;
    heap.push({h(o), o});
    while (!heap.empty()) {
        auto [f, u] = heap.top();
        heap.pop();
        if (done[u]) continue;
        done[u] = 1;
        if (u == d) break;
        for (int32_t p = net.out_ptr[u]; p < net.out_ptr[u + 1]; ++p) {
            const int32_t l = net.out_idx[p];
            const double c = cost[l];
            if (!(c < INF)) continue;
            const int32_t v = net.to[l];
            const double ng = g[u] + c;
            if (ng < g[v]) {
                g[v] = ng;
                prev[v] = l;
                heap.push({ng + h(v), v});
            }
        }
    }
    if (!(g[d] < INF)) return false;
    time = g[d];
    for (int32_t n = d; n != o; n = net.from[prev[n]]) links.push_back(prev[n]);
    std::reverse(links.begin(), links.end());
    return true;
}

}  // namespace traffic
}  // namespace twin
