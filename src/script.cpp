#include "eval.hpp"

#include <redcoord/detail/embedded_scripts.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

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
// (generic_response) must not keep it, or it would hold it in front of EVAL's reply.
struct skip_noscript {
    detail::any_adapter inner;

    static void store(void* self, std::size_t index, node_span reply, error_code& ec) {
        std::size_t i = 0;
        detail::skip_attributes(reply, i);
        if (i < reply.size() && resp3::is_error(reply[i].data_type) &&
            reply[i].value.starts_with("NOSCRIPT"))
            return;
        static_cast<skip_noscript*>(self)->inner(index, reply, ec);
    }
    // The same, for an adapter stored elsewhere (self points at the inner adapter).
    static void store_inner(void* self, std::size_t index, node_span reply, error_code& ec) {
        skip_noscript filter{*static_cast<detail::any_adapter*>(self)};
        store(&filter, index, reply, ec);
    }
};

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

asio::awaitable<std::pair<error_code, std::size_t>> eval_erased(
    connection& conn, const script& s, const std::vector<std::string>& keys,
    const std::vector<std::string>& args, any_adapter adapter, diagnostics& diag,
    request::config cfg, bool cancellable) {
    constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    // Not cancellable: the command runs to its reply even when the caller is cancelled.
    auto exec = [&](const request& r, any_adapter a)
        -> asio::awaitable<std::tuple<error_code, std::size_t>> {
        if (cancellable) co_return co_await conn.async_exec_erased(r, a, &diag, nothrow);
        co_return co_await conn.async_exec_erased(
            r, a, &diag, asio::bind_cancellation_slot(asio::cancellation_slot(), nothrow));
    };
    const request by_sha = make_call("EVALSHA", s.sha1(), keys, args, cfg);
    skip_noscript filter{adapter};
    const any_adapter by_sha_adapter(&filter, &skip_noscript::store, adapter.expected(),
                                     adapter.wants_errors());
    auto [ec, n] = co_await exec(by_sha, by_sha_adapter);
    if (ec != error::noscript) co_return std::pair{ec, n};
    diag.clear();
    const request by_source = make_call("EVAL", s.source(), keys, args, std::move(cfg));
    auto [ec2, n2] = co_await exec(by_source, adapter);
    co_return std::pair{ec2, n2};
}

void run_script_call(connection& conn, script_call& call,
                     asio::any_completion_handler<void(error_code)> done) {
    call.filter_inner = call.adapter;
    const any_adapter filtered(&call.filter_inner, &skip_noscript::store_inner,
                               call.adapter.expected(), call.adapter.wants_errors());
    conn.async_exec_erased(
        call.req, filtered, call.diag,
        [&conn, &call, done = std::move(done)](error_code ec, std::size_t) mutable {
            if (ec != error::noscript) {
                std::move(done)(ec);
                return;
            }
            // The server lost the script: load it, then send the same call again (both in one
            // pipeline, in this order).
            if (call.diag) call.diag->clear();
            call.load.clear();
            call.load.push("SCRIPT", "LOAD", call.sc->source());
            conn.async_exec(call.load, [](error_code, std::size_t) {});
            conn.async_exec_erased(call.req, call.adapter, call.diag,
                                   [done = std::move(done)](error_code ec2, std::size_t) mutable {
                                       std::move(done)(ec2);
                                   });
        });
}

void eval_impl(connection& conn, const script& s, std::vector<std::string> keys,
               std::vector<std::string> args, any_adapter adapter, diagnostics* diag,
               asio::any_completion_handler<void(error_code, std::size_t)> handler) {
    auto run = [](connection& conn, const script& s, std::vector<std::string> keys,
                  std::vector<std::string> args, any_adapter adapter,
                  diagnostics* diag) -> asio::awaitable<std::pair<error_code, std::size_t>> {
        constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
        const request by_sha = make_call("EVALSHA", s.sha1(), keys, args);
        skip_noscript filter{adapter};
        const any_adapter by_sha_adapter(&filter, &skip_noscript::store, adapter.expected(),
                                         adapter.wants_errors());
        auto [ec, n] = co_await conn.async_exec_erased(by_sha, by_sha_adapter, diag, nothrow);
        if (ec != error::noscript) co_return std::pair{ec, n};
        // The server lost the script: EVAL sends the source and caches it again.
        const request by_source = make_call("EVAL", s.source(), keys, args);
        auto [ec2, n2] = co_await conn.async_exec_erased(by_source, adapter, diag, nothrow);
        co_return std::pair{ec2, n2};
    };
    // co_spawn forwards the cancellation slot of its handler to the coroutine and from there to
    // the async_exec it awaits: without the caller's slot bound here, cancellation is lost.
    auto slot = asio::get_associated_cancellation_slot(handler);
    asio::co_spawn(
        conn.get_executor(),
        run(conn, s, std::move(keys), std::move(args), adapter, diag),
        asio::bind_cancellation_slot(
            slot, [h = std::move(handler)](std::exception_ptr ep,
                                           std::pair<error_code, std::size_t> r) mutable {
                if (ep) r.first = asio::error::operation_aborted;
                std::move(h)(r.first, r.second);
            }));
}

}  // namespace detail
}  // namespace redcoord
