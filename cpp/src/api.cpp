// The answers: a routed request carried out on the engine, notifications, events, suppressions and
// the dashboard as JSON, and errors as {"error": ...} with their statuses.
#include "herald/api.hpp"

#include "dashboard_page.hpp"
#include "herald/errors.hpp"
#include "herald/metrics.hpp"

namespace herald::api {

namespace {

using json = nlohmann::json;

json id_text(Id id) { return std::to_string(id); }
json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
json seconds_or_null(std::int64_t ms) { return ms == 0 ? json(nullptr) : json(static_cast<double>(ms) / 1000.0); }

http::ServerResponse json_response(unsigned status, const json& body) {
  http::ServerResponse r;
  r.status = status;
  r.body = dump(body);
  return r;
}

}  // namespace

json encode(const SendResult& r) {
  return json{{"id", id_text(r.id)}, {"state", std::string(to_string(r.state))}, {"duplicate", r.duplicate}};
}

json encode(const StoredNotification& s) {
  const Notification& n = s.notification;
  const DeliveryState& d = s.delivery;
  json out = json::object();
  out["id"] = id_text(n.id);
  out["state"] = std::string(to_string(d.state));
  out["tenant"] = n.tenant;
  out["type"] = n.type;
  out["recipient_id"] = n.recipient_id;
  out["priority"] = std::string(to_string(n.priority));
  out["attempts"] = d.attempt;
  out["provider"] = text_or_null(d.provider);
  out["provider_message_id"] = text_or_null(d.provider_message_id);
  out["last_error"] = text_or_null(d.last_error);
  out["in_doubt"] = d.in_doubt;
  out["idempotency_key"] = text_or_null(n.idempotency_key);
  out["ordering_key"] = text_or_null(n.ordering_key);
  out["created_at"] = seconds_or_null(n.created_at_ms);
  out["updated_at"] = seconds_or_null(s.updated_at_ms);
  out["send_at"] = seconds_or_null(n.send_at_ms);
  out["expires_at"] = seconds_or_null(n.expires_at_ms);
  out["next_attempt_at"] = seconds_or_null(d.state == State::retry_scheduled ? d.next_at_ms : 0);
  out["channel"] = text_or_null(d.channel);
  out["address"] = text_or_null(d.address);
  out["receipt"] = text_or_null(std::string(to_string(d.receipt)));
  out["receipt_at"] = seconds_or_null(d.receipt_at_ms);
  out["cost"] = d.cost;
  return out;
}

json encode(const Event& e) {
  json out = json::object();
  out["id"] = id_text(e.notification_id);
  out["event"] = to_string(e.kind);
  out["at"] = static_cast<double>(e.ts_us) / 1e6;
  out["attempt"] = e.attempt;
  out["provider"] = text_or_null(e.provider);
  out["latency_ms"] = e.latency_us < 0 ? json(nullptr) : json(static_cast<double>(e.latency_us) / 1000.0);
  out["http_status"] = e.http_status == 0 ? json(nullptr) : json(e.http_status);
  out["detail"] = text_or_null(e.detail);
  return out;
}

json encode(const Suppression& x) {
  return json{{"channel", x.channel},   {"address", x.address},   {"reason", to_string(x.reason)},
              {"detail", x.detail},     {"provider", x.provider}, {"notification_id", id_text(x.notification_id)},
              {"at", seconds_or_null(x.at_ms)}};
}

namespace {

json minute_series(const LastHour::Series& series, std::uint64_t MinuteCounts::*field) {
  json out = json::array();
  for (const MinuteCounts& m : series) out.push_back(m.*field);
  return out;
}

json minutes_json(const LastHour::Series& series) {
  return json{{"accepted", minute_series(series, &MinuteCounts::accepted)},
              {"failed", minute_series(series, &MinuteCounts::failed)}};
}

}  // namespace

json dashboard(Engine& engine, std::size_t dead_letters) {
  const EngineStats c = engine.stats();
  const EngineHealth h = engine.health();
  const MetricsGauges g = engine.gauges();
  const std::vector<ProviderHealth> health = engine.provider_health();
  const LastHour hour = engine.attempts_last_hour();
  json stats = {{"received", c.received},         {"deduplicated", c.deduplicated},
                {"attempts", c.attempts},         {"accepted", c.accepted},
                {"retries", c.retries},           {"failovers", c.failovers},
                {"expired", c.expired},           {"dead_lettered", c.dead_lettered},
                {"cancelled", c.cancelled},       {"in_doubt", c.in_doubt},
                {"recovered", c.recovered},       {"active", c.active},
                {"in_flight", c.in_flight},       {"suppressed", c.suppressed},
                {"receipts", c.receipts},         {"receipts_rejected", c.receipts_rejected},
                {"lookups", c.lookups},           {"reconciled", c.reconciled},
                {"batched_requests", c.batched_requests}, {"pruned", c.pruned}};
  json queues = json::array();
  for (int p = 0; p < priority_count; ++p) {
    const auto i = static_cast<std::size_t>(p);
    queues.push_back({{"lane", std::string(to_string(static_cast<Priority>(p)))}, {"ready", g.ready[i]}, {"waiting", g.waiting[i]}});
  }
  json providers = json::array();
  for (const auto& [name, in_flight] : g.provider_in_flight) {
    json circuit = nullptr;  // a provider the gauges list is configured, so its health is there too
    for (const ProviderHealth& p : health) {
      if (p.name != name) continue;
      circuit = {{"state", std::string(to_string(p.circuit))},
                 {"failure_rate", p.failure_rate},
                 {"attempts", p.attempts},
                 {"half_open_at", p.circuit == CircuitState::open ? seconds_or_null(p.half_open_at_ms) : json(nullptr)}};
    }
    json minutes = minutes_json(LastHour::Series{});
    for (const auto& [n, series] : hour.providers) {
      if (n == name) minutes = minutes_json(series);
    }
    providers.push_back({{"name", name}, {"in_flight", in_flight}, {"circuit", std::move(circuit)},
                         {"last_hour", std::move(minutes)}});
  }
  json last_hour = minutes_json(hour.total);
  last_hour["start"] = static_cast<double>(hour.start_ms) / 1000.0;
  last_hour["bucket_seconds"] = 60;
  json dead = json::array();
  for (const auto& s : engine.dead_letters(dead_letters)) dead.push_back(encode(s));
  return json{{"at", static_cast<double>(engine.now_ms()) / 1000.0},
              {"stats", std::move(stats)},
              {"health", {{"closing", h.closing},
                          {"store_degraded", h.store.degraded},
                          {"store_error", text_or_null(h.store.error)},
                          {"store_held_batches", h.store.held_batches},
                          {"store_write_faults", h.store.write_faults}}},
              {"queues", std::move(queues)},
              {"scheduled", g.scheduled},
              {"providers", std::move(providers)},
              {"last_hour", std::move(last_hour)},
              {"dead_letters", std::move(dead)}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

http::ServerResponse api_error(unsigned status, std::string_view type, std::string_view message, std::string_view field) {
  json e = json::object();
  e["type"] = std::string(type);
  if (!field.empty()) e["field"] = std::string(field);
  e["message"] = std::string(message);
  return json_response(status, json{{"error", e}});
}

http::ServerResponse error_for(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ValidationError& e) {
    return api_error(400, "ValidationError", e.what(), e.field());
  } catch (const NotFound& e) {
    return api_error(404, "NotFound", e.what());
  } catch (const IdempotencyConflict& e) {
    return api_error(409, "IdempotencyConflict", e.what());
  } catch (const InvalidState& e) {
    return api_error(409, "InvalidState", e.what());
  } catch (const StoreError& e) {
    return api_error(503, "StoreError", e.what());
  } catch (const EngineClosed& e) {
    return api_error(503, "EngineClosed", e.what());
  } catch (const ConfigError& e) {
    return api_error(500, "ConfigError", e.what(), e.field());
  } catch (const Error& e) {
    return api_error(500, "HeraldError", e.what());
  } catch (const std::exception& e) {
    return api_error(500, "HeraldError", std::string("internal error: ") + e.what());
  } catch (...) {
    return api_error(500, "HeraldError", "internal error");
  }
}

http::ServerResponse perform(Engine& engine, const Route& r, const std::string& body) {
  try {
    switch (r.action) {
      case Action::send: return json_response(200, encode(engine.send(decode_notification(parse_body(body)))));
      case Action::send_many: {
        json out = json::array();
        for (const auto& x : engine.send_many(decode_batch(parse_body(body)))) out.push_back(encode(x));
        return json_response(200, json{{"receipts", std::move(out)}});
      }
      case Action::by_recipient: {
        json out = json::array();
        for (const auto& s : engine.by_recipient(r.recipient, r.limit == 0 ? 20 : r.limit)) out.push_back(encode(s));
        return json_response(200, json{{"notifications", std::move(out)}});
      }
      case Action::status: {
        const auto s = engine.status(r.id);
        if (!s) return api_error(404, "NotFound", "notification " + std::to_string(r.id) + " not found");
        return json_response(200, encode(*s));
      }
      case Action::trace: {
        json out = json::array();
        for (const auto& e : engine.trace(r.id)) out.push_back(encode(e));
        return json_response(200, json{{"events", std::move(out)}});
      }
      case Action::dead_letters: {
        json out = json::array();
        for (const auto& s : engine.dead_letters(r.limit == 0 ? 1000 : r.limit)) out.push_back(encode(s));
        return json_response(200, json{{"notifications", std::move(out)}});
      }
      case Action::suppressions: {
        json out = json::array();
        for (const auto& x : engine.suppressions(r.limit == 0 ? 10'000 : r.limit)) out.push_back(encode(x));
        return json_response(200, json{{"suppressions", std::move(out)}});
      }
      case Action::retry:
        engine.retry(r.id);
        return json_response(200, json::object());
      case Action::cancel: return json_response(200, json{{"cancelled", engine.cancel(r.id)}});
      case Action::unsuppress: return json_response(200, json{{"removed", engine.unsuppress(r.channel, r.address)}});
      case Action::health: return json_response(200, json{{"alive", true}});
      case Action::metrics: {
        http::ServerResponse resp;
        resp.status = 200;
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
        resp.body = engine.metrics_text();
        return resp;
      }
      case Action::openapi: break;  // answered by the server, which holds the document
      case Action::dashboard: return json_response(200, dashboard(engine, r.limit == 0 ? 20 : r.limit));
      case Action::dashboard_page: {
        http::ServerResponse resp;
        resp.content_type = "text/html; charset=utf-8";
        resp.body = std::string(kDashboardPage);
        resp.headers.emplace_back("Cache-Control", "no-store");
        return resp;
      }
      case Action::ready: {
        const EngineHealth h = engine.health();
        const bool ready = !h.closing && !h.store.degraded;
        json out{{"ready", ready}, {"closing", h.closing}, {"store_degraded", h.store.degraded}};
        // Providers' health is information, not readiness: an open circuit fails over, it does not
        // make the engine unable to work.
        if (!h.closing) {
          try {
            json providers = json::object();
            for (const ProviderHealth& p : engine.provider_health()) {
              providers[p.name] = {{"circuit", std::string(to_string(p.circuit))},
                                   {"failure_rate", p.failure_rate},
                                   {"attempts", p.attempts},
                                   {"p99_ms", p.p99_ms < 0 ? json(nullptr) : json(p.p99_ms)},
                                   {"cost", p.cost}};
            }
            out["providers"] = std::move(providers);
          } catch (const EngineClosed&) {
            // closed meanwhile: the answer says so without them
          }
        }
        auto resp = json_response(ready ? 200 : 503, out);
        if (!ready) resp.headers.emplace_back("Retry-After", "5");
        return resp;
      }
      case Action::bad_id: return api_error(400, "ValidationError", "id: must be a decimal integer from 0 to 9223372036854775807", "id");
      case Action::bad_method: return api_error(405, "MethodNotAllowed", "this endpoint does not take this method");
      case Action::not_found: break;
    }
    return api_error(404, "NoSuchEndpoint", "no such endpoint");
  } catch (...) {
    return error_for(std::current_exception());
  }
}

}  // namespace herald::api
