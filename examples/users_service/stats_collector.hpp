#pragma once
// The database's side of GET /metrics: a db.stats() snapshot as Prometheus families, taken at each scrape.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <asyncdb/database.hpp>

#include <chrono>
#include <utility>
#include <vector>

namespace users_service {

// Families built from a db.stats() snapshot at each scrape. The snapshot holds running totals, which a
// prometheus::Counter cannot be set to, so this is a Collectable of its own, as prometheus-cpp's custom collectors are.
class stats_collector final : public prometheus::Collectable {
 public:
  explicit stats_collector(asyncdb::database& db) : db_{db} {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    const asyncdb::stats s = db_.stats();
    const auto seconds = [](std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); };
    std::vector<prometheus::MetricFamily> out;
    out.reserve(16);  // more than the families below: family() hands out references that must stay valid
    const auto family = [&out](const char* name, const char* help, MetricType type) -> prometheus::MetricFamily& {
      return out.emplace_back(prometheus::MetricFamily{name, help, type, {}});
    };
    const auto sample = [](prometheus::MetricFamily& f, double value,
                           std::vector<prometheus::ClientMetric::Label> labels = {}) {
      prometheus::ClientMetric& m = f.metric.emplace_back();
      m.label = std::move(labels);
      (f.type == MetricType::Counter ? m.counter.value : m.gauge.value) = value;
    };

    // stats() says only who holds the writer; the readers' states are not in it, so only the writer's pool is shown.
    // The name is OpenTelemetry's db.client.connections.usage (semantic conventions up to 1.25, with `state` and
    // `pool.name`): its successor db.client.connection.count maps to a *_count gauge, which promtool's lint refuses.
    const bool writer_used = s.writer.what != asyncdb::writer_holder::kind::none;
    auto& connections = family(
        "db_client_connections_usage",
        "Connections by state (the writer only: asyncdb's stats do not tell the readers' state).", MetricType::Gauge);
    sample(connections, writer_used ? 0 : 1, {{"pool_name", "writer"}, {"state", "idle"}});
    sample(connections, writer_used ? 1 : 0, {{"pool_name", "writer"}, {"state", "used"}});
    sample(family("asyncdb_operations_queued", "Operations accepted and not started yet (sessions' queues included).",
                  MetricType::Gauge),
           static_cast<double>(s.queued));
    sample(family("asyncdb_operations_running", "Operations executing on a connection now.", MetricType::Gauge),
           static_cast<double>(s.running));
    auto& outcomes = family("asyncdb_operations_total",
                            "Operations ended, by outcome: completed (no exception), failed (an exception), cancelled "
                            "(while queued or running), rejected (at once: queue full or database closed).",
                            MetricType::Counter);
    sample(outcomes, static_cast<double>(s.completed), {{"outcome", "completed"}});
    sample(outcomes, static_cast<double>(s.failed), {{"outcome", "failed"}});
    sample(outcomes, static_cast<double>(s.cancelled), {{"outcome", "cancelled"}});
    sample(outcomes, static_cast<double>(s.rejected), {{"outcome", "rejected"}});
    sample(
        family("asyncdb_queue_wait_seconds_total", "Total time started operations spent queued.", MetricType::Counter),
        seconds(s.queue_wait));
    sample(family("asyncdb_group_commits_total", "Shared transactions committed by the writer (group commit).",
                  MetricType::Counter),
           static_cast<double>(s.group_commits));
    sample(family("asyncdb_grouped_operations_total",
                  "Writes committed by a shared transaction (divided by asyncdb_group_commits_total: the mean size).",
                  MetricType::Counter),
           static_cast<double>(s.grouped));
    sample(family("asyncdb_rerouted_operations_total", "Undeclared operations moved from a reader to the writer.",
                  MetricType::Counter),
           static_cast<double>(s.rerouted));
    const char* holder = s.writer.what == asyncdb::writer_holder::kind::operation ? "operation"
                         : s.writer.what == asyncdb::writer_holder::kind::session ? "session"
                                                                                  : "none";
    sample(family("asyncdb_writer_held_seconds", "How long the current holder has held the writer connection.",
                  MetricType::Gauge),
           seconds(s.writer.held_for), {{"holder", holder}, {"name", s.writer.name}});
    return out;
  }

 private:
  asyncdb::database& db_;
};

}  // namespace users_service
