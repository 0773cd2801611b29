#pragma once
// GET /metrics on prometheus-cpp's core: its registry, metric types and text serializer (not its civetweb exposer:
// RESTinio serves the page). Names follow OpenTelemetry's semantic conventions where they name the same thing
// (http.server.request.duration, db.client.operation.duration, db.client.connections.usage); the rest is asyncdb_*.

#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <asyncdb/observer.hpp>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stats_collector.hpp"

namespace users_service {

/// The service's metrics: HTTP requests, asyncdb operations and the database's stats() at each scrape. Thread-safe.
class metrics {
 public:
  /// Without `with_db` (--sync mode) only the HTTP families exist.
  explicit metrics(bool with_db)
      : requests_{prometheus::BuildHistogram()
                      .Name("http_server_request_duration_seconds")
                      .Help("Time from a request's arrival to its response being handed to the server.")
                      .Register(registry_)} {
    if (!with_db) return;
    run_ = &prometheus::BuildHistogram()
                .Name("db_client_operation_duration_seconds")
                .Help("Time an asyncdb operation ran on its connection, by operation name and outcome.")
                .Register(registry_);
    queue_wait_ = &prometheus::BuildHistogram()
                       .Name("asyncdb_operation_queue_wait_seconds")
                       .Help("Time an asyncdb operation waited for a connection, by operation name and outcome.")
                       .Register(registry_);
    group_ = &prometheus::BuildHistogram()
                  .Name("asyncdb_commit_group_size")
                  .Help("Per committed asyncdb operation: the operations its commit took, itself included (1: alone).")
                  .Register(registry_)
                  .Add({}, group_buckets());
  }

  /// Adds `db`'s stats() to every later scrape; `db` must outlive this object. Once, after the database opened (its
  /// observer, which records into this object, is given before it opens).
  void watch(asyncdb::database& db) { stats_ = std::make_unique<stats_collector>(db); }

  /// One response: the request's method, the matched route (empty when none matched, which Prometheus reads as
  /// absent, as OpenTelemetry asks), the status and the time since the request arrived.
  void record_request(std::string_view method, std::string_view route, int status, double seconds) {
    requests_
        .Add({{"http_request_method", std::string{method}},
              {"http_route", std::string{route}},
              {"http_response_status_code", std::to_string(status)}},
             http_buckets())
        .Observe(seconds);
  }

  /// One asyncdb operation, as the database's operation observer (options::observer) tells it: queue wait and run
  /// time apart, by operation name and outcome, and the size of its commit when it committed. The service's
  /// handlers cannot split the two times from the caller's side, so only the observer calls it. No-op in --sync mode.
  void record_operation(const asyncdb::operation_record& r) {
    if (!run_) return;
    const prometheus::Labels labels{{"db_operation_name", std::string{r.name}}, {"outcome", outcome_name(r.outcome)}};
    queue_wait_->Add(labels, db_buckets()).Observe(std::chrono::duration<double>(r.queued).count());
    run_->Add(labels, db_buckets()).Observe(std::chrono::duration<double>(r.running).count());
    if (r.committed) group_->Observe(static_cast<double>(r.group_size == 0 ? 1 : r.group_size));
  }

  /// The label value of an outcome.
  static std::string outcome_name(asyncdb::operation_outcome o) {
    switch (o) {
      case asyncdb::operation_outcome::succeeded:
        return "succeeded";
      case asyncdb::operation_outcome::failed:
        return "failed";
      case asyncdb::operation_outcome::aborted:
        return "aborted";
      case asyncdb::operation_outcome::rejected:
        return "rejected";
      case asyncdb::operation_outcome::timed_out:
        return "timed_out";
    }
    return "unknown";
  }

  /// The text exposition (format 0.0.4) of every family, with a fresh stats() snapshot.
  std::string scrape() const {
    std::vector<prometheus::MetricFamily> families = registry_.Collect();
    if (stats_) {
      std::vector<prometheus::MetricFamily> more = stats_->Collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
    std::ostringstream out;
    prometheus::TextSerializer{}.Serialize(out, families);
    return out.str();
  }

 private:
  // OpenTelemetry's advised bucket boundaries for http.server.request.duration and db.client.operation.duration.
  static const prometheus::Histogram::BucketBoundaries& http_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                                           0.5,   0.75, 1,     2.5,  5,     7.5, 10};
    return b;
  }
  static const prometheus::Histogram::BucketBoundaries& db_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
    return b;
  }
  static const prometheus::Histogram::BucketBoundaries& group_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    return b;
  }

  prometheus::Registry registry_;
  prometheus::Family<prometheus::Histogram>& requests_;
  prometheus::Family<prometheus::Histogram>* run_ = nullptr;
  prometheus::Family<prometheus::Histogram>* queue_wait_ = nullptr;
  prometheus::Histogram* group_ = nullptr;
  std::unique_ptr<stats_collector> stats_;
};

}  // namespace users_service
