#include "core/script_batch.hpp"

#include <redcoord/error.hpp>

#include <string>

namespace redcoord::detail {

namespace {

// One call under way: the entries it carries and, once the reply is in, their elements.
struct batch_call {
    script_call script;
    std::vector<std::unique_ptr<batch_entry>> entries;
    struct element {
        error_code ec;
        batch_reply reply;
        std::string message;
    };
    std::vector<element> elements;
    diagnostics diag;

    // The adapter: an array with one element per entry, each an integer, an array of at most
    // two integers, or an error (that entry's alone).
    static void store(void* self, std::size_t, node_span reply, error_code& ec) {
        auto& call = *static_cast<batch_call*>(self);
        std::size_t i = 0;
        const std::size_t n = open_aggregate(reply, i, false, ec);
        if (ec) return;
        if (n != call.entries.size()) {
            ec = error::incompatible_size;
            return;
        }
        call.elements.resize(n);
        for (auto& e : call.elements) {
            skip_attributes(reply, i);
            if (i >= reply.size()) {
                ec = error::incompatible_size;
                return;
            }
            const auto& node = reply[i];
            if (resp3::is_error(node.data_type)) {
                e.ec = error::server_error;
                e.message = node.value;
                skip_value(reply, i);
            } else if (resp3::is_aggregate(node.data_type)) {
                e.reply.array = true;
                const std::size_t m = open_aggregate(reply, i, false, ec);
                if (!ec && m > e.reply.values.size()) ec = error::incompatible_size;
                for (std::size_t k = 0; k < m && !ec; ++k)
                    convert_signed(reply, i, e.reply.values[k], ec);
            } else {
                convert_signed(reply, i, e.reply.values[0], ec);
            }
            if (ec) return;
        }
    }

    void finish(error_code ec) {
        for (std::size_t i = 0; i < entries.size(); ++i) {
            auto& entry = *entries[i];
            if (ec) {
                if (entry.diag) *entry.diag = diag;
                entry.complete(ec, {});
                continue;
            }
            auto& e = elements[i];
            if (e.ec && entry.diag) entry.diag->set_server_message(e.message);
            entry.complete(e.ec, e.reply);
        }
    }
};

}  // namespace

void script_batch::add(std::unique_ptr<batch_entry> e,
                     std::initializer_list<std::string_view> keys,
                     std::initializer_list<std::string_view> args) {
    entries_.push_back(std::move(e));
    keys_.insert(keys_.end(), keys);
    args_.insert(args_.end(), args);
    if (entries_.size() >= max_entries) {
        flush();
    } else if (!posted_) {
        posted_ = true;
        post_();
    }
}

void script_batch::flush() {
    posted_ = false;
    if (entries_.empty()) return;
    const script& ops = script_;
    auto call = std::make_unique<batch_call>();
    call->entries = std::move(entries_);
    entries_.clear();
    call->script.sc = &ops;
    call->script.req.push("EVALSHA", ops.sha1(), keys_.size(), keys_, args_);
    keys_.clear();
    args_.clear();
    call->script.adapter = any_adapter(call.get(), &batch_call::store, 1, false);
    call->script.diag = &call->diag;
    auto& script = call->script;
    run_script_call(conn_, script, [call = std::move(call)](error_code ec, std::size_t) {
        call->finish(ec);
    });
}

}  // namespace redcoord::detail
