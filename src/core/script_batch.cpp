#include "core/script_batch.hpp"

#include "core/access.hpp"
#include "wire/cluster_keys.hpp"
#include "wire/connection_impl.hpp"

#include <redcoord/error.hpp>

#include <algorithm>
#include <numeric>
#include <string>

namespace redcoord::detail {

bool access::is_cluster(const connection& c) noexcept { return c.impl_->is_cluster(); }

std::vector<endpoint> access::cluster_masters(const connection& c) {
    return c.impl_->cluster_masters();
}

void access::refresh_cluster(const connection& c) noexcept { c.impl_->refresh_cluster(); }

std::string_view publish_command(const connection& conn) noexcept {
    return access::is_cluster(conn) ? "SPUBLISH" : "PUBLISH";
}

const void* access::cluster_node_of_slot(const connection& c, std::uint16_t slot) noexcept {
    return c.impl_->cluster_node_of_slot(slot);
}

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
    // To send an entry again: its keys and arguments, and the batch (while it lives).
    script_batch* batch = nullptr;
    std::shared_ptr<bool> batch_alive;
    const connection* conn = nullptr;
    std::vector<std::vector<std::string_view>> keys, args;

    // On a Redis Cluster, a key the call's master does not serve is refused at its first
    // access: a key of another slot of the call (undeclared, see lock_ops.lua) when the map
    // was out of date, or a key of a slot being migrated away that the script deleted and
    // then touched again (it now "lives" on the target). Every operation of lock_ops.lua
    // reads its lock before it writes anything, so an operation refused so did nothing: it
    // goes again, in a call of its own slot, and this time is redirected to the right master.
    static bool refused_mid_migration(const std::string& message) {
        return message.find("non local key") != std::string::npos;
    }

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
            if (e.ec && refused_mid_migration(e.message) && batch && *batch_alive &&
                entry.requeued < script_batch::max_requeues) {
                // Its slot is not (or no longer all) on the master the call went to: the map is
                // read again, and the entry goes in a call of its slot alone.
                if (entry.requeued == 0) access::refresh_cluster(*conn);
                ++entry.requeued;
                batch->add_views(std::move(entries[i]), keys[i], args[i]);
                continue;
            }
            if (e.ec && entry.diag) entry.diag->set_server_message(e.message);
            entry.complete(e.ec, e.reply);
        }
    }
};

void script_batch::add(std::unique_ptr<batch_entry> e,
                     std::initializer_list<std::string_view> keys,
                     std::initializer_list<std::string_view> args) {
    add_views(std::move(e), std::span<const std::string_view>(keys.begin(), keys.size()),
              std::span<const std::string_view>(args.begin(), args.size()));
}

void script_batch::add_views(std::unique_ptr<batch_entry> e,
                             std::span<const std::string_view> keys,
                             std::span<const std::string_view> args) {
    entries_.push_back(std::move(e));
    starts_.emplace_back(keys_.size(), args_.size());
    keys_.insert(keys_.end(), keys.begin(), keys.end());
    args_.insert(args_.end(), args.begin(), args.end());
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
    if (!access::is_cluster(conn_)) return send_queued(keys_.size());
    // One call per master: a stable sort by (master, slot) keeps each slot's entries in order
    // and puts the first slot's first, whose keys the call declares (see lock_ops.lua). An
    // entry sent again after a refusal, or of a slot whose master is not known for sure, goes
    // in a call of its slot alone (master 0 below), so the connection follows the slot's
    // redirections with its keys declared.
    const std::size_t n = entries_.size();
    std::vector<std::uint16_t> slot(n);
    std::vector<std::uintptr_t> master(n);
    for (std::size_t i = 0; i < n; ++i) {
        slot[i] = hash_slot(keys_[starts_[i].first]);
        master[i] = entries_[i]->requeued > 0
                        ? 0
                        : reinterpret_cast<std::uintptr_t>(
                              access::cluster_node_of_slot(conn_, slot[i]));
    }
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return master[a] != master[b] ? master[a] < master[b] : slot[a] < slot[b];
    });
    auto same_call = [&](std::size_t a, std::size_t b) {
        return master[a] == master[b] && (master[a] != 0 || slot[a] == slot[b]);
    };
    auto entries = std::move(entries_);
    auto keys = std::move(keys_);
    auto args = std::move(args_);
    auto starts = std::move(starts_);
    entries_.clear();
    keys_.clear();
    args_.clear();
    starts_.clear();
    auto end_of = [&](std::size_t i, bool key) {
        if (i + 1 < starts.size()) return key ? starts[i + 1].first : starts[i + 1].second;
        return key ? keys.size() : args.size();
    };
    for (std::size_t k = 0; k < n;) {
        std::size_t j = k;
        std::size_t declared = 0;
        for (; j < n && same_call(order[j], order[k]); ++j) {
            const std::size_t i = order[j];
            entries_.push_back(std::move(entries[i]));
            starts_.emplace_back(keys_.size(), args_.size());
            keys_.insert(keys_.end(), keys.begin() + static_cast<std::ptrdiff_t>(starts[i].first),
                         keys.begin() + static_cast<std::ptrdiff_t>(end_of(i, true)));
            args_.insert(args_.end(), args.begin() + static_cast<std::ptrdiff_t>(starts[i].second),
                         args.begin() + static_cast<std::ptrdiff_t>(end_of(i, false)));
            if (slot[i] == slot[order[k]]) declared = keys_.size();
        }
        send_queued(declared);
        k = j;
    }
}

void script_batch::send_queued(std::size_t declared) {
    const script& ops = script_;
    auto call = std::make_unique<batch_call>();
    if (access::is_cluster(conn_)) {
        // Only a cluster refuses a key mid-script: keep what it takes to send an entry again.
        call->batch = this;
        call->batch_alive = alive_;
        call->conn = &conn_;
        for (std::size_t i = 0; i < starts_.size(); ++i) {
            const auto key_end = i + 1 < starts_.size() ? starts_[i + 1].first : keys_.size();
            const auto arg_end = i + 1 < starts_.size() ? starts_[i + 1].second : args_.size();
            call->keys.emplace_back(keys_.begin() + static_cast<std::ptrdiff_t>(starts_[i].first),
                                    keys_.begin() + static_cast<std::ptrdiff_t>(key_end));
            call->args.emplace_back(
                args_.begin() + static_cast<std::ptrdiff_t>(starts_[i].second),
                args_.begin() + static_cast<std::ptrdiff_t>(arg_end));
        }
    }
    call->entries = std::move(entries_);
    entries_.clear();
    starts_.clear();
    call->script.sc = &ops;
    // lock_ops.lua's last arguments: the keys it does not declare and their count, then how
    // its releases publish.
    const std::span<const std::string_view> all(keys_);
    call->script.req.push("EVALSHA", ops.sha1(), declared, all.first(declared), args_,
                          all.subspan(declared), all.size() - declared, publish_command(conn_));
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
