#include <redcoord/script.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>

#include "core/access.hpp"
#include "core/embedded_scripts.hpp"
#include "core/eval.hpp"
#include <openssl/evp.h>

namespace redcoord {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

std::string sha1_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

// EVALSHA's NOSCRIPT reply is not the script's reply: a response that stores error replies
// (generic_response) must not keep it, or it would hold it in front of the second call's reply.
// self: the adapter of the call's response.
void store_skipping_noscript(void* self, std::size_t index, node_span reply, error_code& ec) {
    std::size_t i = 0;
    detail::skip_attributes(reply, i);
    if (i < reply.size() && resp3::is_error(reply[i].data_type) &&
        reply[i].value.starts_with("NOSCRIPT"))
        return;
    (*static_cast<detail::any_adapter*>(self))(index, reply, ec);
}

request make_call(std::string_view command, std::string_view script_ref,
                  const std::vector<std::string>& keys, const std::vector<std::string>& args,
                  request::config cfg = {}) {
    request req(std::move(cfg));
    req.push(command, script_ref, keys.size(), keys, args);
    return req;
}

}  // namespace

script::script(std::string source) : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

const script& script::embedded(std::string_view name) {
    // Built once: every embedded script with its hash.
    static const std::vector<std::pair<std::string_view, script>> all = [] {
        std::vector<std::pair<std::string_view, script>> v;
        for (const auto& e : detail::embedded_scripts())
            v.emplace_back(e.name, script(std::string(e.source)));
        return v;
    }();
    for (const auto& [n, s] : all)
        if (n == name) return s;
    diagnostics diag;
    diag.set_client_message("no embedded script named '" + std::string(name) + "'");
    throw error_with_diagnostics(error::invalid_argument, diag);
}

namespace detail {

void run_script_call(connection& conn, script_call& call,
                     asio::any_completion_handler<void(error_code, std::size_t)> done) {
    const any_adapter filtered(&call.adapter, &store_skipping_noscript, call.adapter.expected(),
                               call.adapter.wants_errors());
    // The caller's cancellation slot (if any) reaches both sends of the call; loading the
    // script is not cancellable.
    auto slot = asio::get_associated_cancellation_slot(done);
    detail::access::exec_erased(
        conn, call.req, filtered, call.diag,
        asio::bind_cancellation_slot(slot, [&conn, &call, slot, done = std::move(done)](
                                               error_code ec, std::size_t n) mutable {
            if (ec != error::noscript) {
                std::move(done)(ec, n);
                return;
            }
            // The server lost the script: load it, then send the same call again (both in
            // one pipeline, in this order). On a Redis Cluster the load goes to every master
            // and may answer after the call: the caller is told once both have answered.
            if (call.diag) call.diag->clear();
            struct reload {
                script_call* call;
                asio::any_completion_handler<void(error_code, std::size_t)> done;
                error_code call_ec;
                std::size_t call_n = 0;
                int pending = 2;
                void arrived() {
                    if (--pending > 0) return;
                    if (call_ec == error::noscript && call->load_ec) {
                        call_ec = call->load_ec;
                        if (call->diag) *call->diag = call->load_diag;
                    }
                    std::move(done)(call_ec, call_n);
                }
            };
            auto state = std::make_shared<reload>(reload{&call, std::move(done), {}, 0});
            call.load.clear();
            call.load.push("SCRIPT", "LOAD", call.sc->source());
            call.load_ec = {};
            ignore_t sink;  // make_adapter keeps no reference to it
            detail::access::exec_erased(conn, call.load, make_adapter(sink), &call.load_diag,
                                        [state](error_code load_ec, std::size_t) {
                                            state->call->load_ec = load_ec;
                                            state->arrived();
                                        });
            detail::access::exec_erased(
                conn, call.req, call.adapter, call.diag,
                asio::bind_cancellation_slot(slot, [state](error_code ec2, std::size_t n2) {
                    state->call_ec = ec2;
                    state->call_n = n2;
                    state->arrived();
                }));
        }));
}

asio::awaitable<std::pair<error_code, std::size_t>> eval_erased(
    connection& conn, const script& s, const std::vector<std::string>& keys,
    const std::vector<std::string>& args, any_adapter adapter, diagnostics& diag,
    request::config cfg, bool cancellable) {
    constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    script_call call;
    call.sc = &s;
    call.req = make_call("EVALSHA", s.sha1(), keys, args, std::move(cfg));
    call.adapter = adapter;
    call.diag = &diag;
    if (cancellable) {
        auto [ec, n] = co_await async_script_call(conn, call, nothrow);
        co_return std::pair{ec, n};
    }
    // Not cancellable: the script runs to its reply even when the caller is cancelled.
    auto [ec, n] = co_await async_script_call(
        conn, call, asio::bind_cancellation_slot(asio::cancellation_slot(), nothrow));
    co_return std::pair{ec, n};
}

void eval_impl(connection& conn, const script& s, std::vector<std::string> keys,
               std::vector<std::string> args, any_adapter adapter, diagnostics* diag,
               asio::any_completion_handler<void(error_code, std::size_t)> handler) {
    auto call = std::make_unique<script_call>();
    call->sc = &s;
    call->req = make_call("EVALSHA", s.sha1(), keys, args);
    call->adapter = adapter;
    call->diag = diag;
    auto& ref = *call;
    auto slot = asio::get_associated_cancellation_slot(handler);
    run_script_call(
        conn, ref,
        asio::bind_cancellation_slot(slot, [call = std::move(call), h = std::move(handler)](
                                               error_code ec, std::size_t n) mutable {
            asio::dispatch(asio::append(std::move(h), ec, n));
        }));
}

}  // namespace detail
}  // namespace redcoord
