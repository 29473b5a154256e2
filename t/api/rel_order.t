# Per-object order with failures: several admins change a few objects at
# once (one client per object, each change after the previous one was
# answered, through both consoles), while the receiver fails about a third
# of the calls (503, 500, 429, reset, garbage, a hang past the timeout),
# never more than twice in a row for one object. Site et_order of
# t/conf/reliability.conf.in (EventTriggerRetry 0 200ms 400ms ..., 10
# attempts, no circuit breaker).
#
# Every object's calls arrive in capture order: the seq of the calls the
# receiver got for an object never goes down (a retry repeats the last
# one), the calls answered 200 are exactly the changes in the order the
# console saw them (= the outbox's capture order), each once.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use POSIX ();
use File::Temp ();
use ETTest qw(:all);
use ETRel qw(:all);

my $ROOT = '/hooks/order';
my $CHANGES = 25;            # per object: create, 23 updates, delete
my @objects = qw(member member key key application package_key);

# What an object's calls get, in turn (then 200): failures at most twice in
# a row, so no event runs out of its 10 attempts.
my @pattern = (200, 503, 200, 'reset', 503, 200, 200, 500, 200, 429,
               'garbage', 200, { hang => 1.5 }, 200, 200, 502, 200, 'reset',
               200, 503, 429, 200, 200, 'garbage', 200, 200, 500, 200);

plan tests => 2 + 5 * @objects + 3;

start_console();
my $receiver = start_fault_receiver(truncate => 1);

my @objs;
for my $i (0 .. $#objects) {
    my $o = { object => $objects[$i], id => uniq("ord$i"),
              console => $i % 2 ? 'proxy' : 'inproc' };
    # the pattern, rotated so that the objects fail at different times
    my @p = (@pattern[($i * 3) % @pattern .. $#pattern],
             @pattern[0 .. ($i * 3) % @pattern - 1]);
    set_plan({ path => "$ROOT/v1/$o->{object}/$o->{id}", actions => \@p,
               default => 200 });
    push @objs, $o;
}

# One client process per object: create, updates, delete, each with its
# seq, one after the other; it writes "seq status" lines.
my $dir = File::Temp->newdir;
my @kids;
for my $k (0 .. $#objs) {
    my $o = $objs[$k];
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ok = eval {
            open my $out, '>', "$dir/$k" or die $!;
            my $base = "/$o->{console}/$o->{object}";
            for my $seq (0 .. $CHANGES - 1) {
                my($m, $path) = $seq == 0 ? (POST => $base)
                    : $seq == $CHANGES - 1 ? (DELETE => "$base/$o->{id}")
                    : (($seq % 2 ? 'PUT' : 'PATCH') => "$base/$o->{id}");
                my $res = request('et_order', $m => $path,
                                  json => { id => $o->{id}, seq => $seq });
                print $out "$seq ", $res->code, "\n";
            }
            close $out;
            1;
        };
        POSIX::_exit($ok ? 0 : 1);
    }
    push @kids, $pid;
}
my $bad_exit = 0;
for (@kids) { waitpid $_, 0; $bad_exit++ if $? }
my @failed_requests;
for my $k (0 .. $#objs) {
    open my $in, '<', "$dir/$k" or die "client $k: no output";
    push @failed_requests, grep { !/ 20[01]$/ } <$in>;
}
ok(!$bad_exit && !@failed_requests, 'every admin change was answered 2xx')
    or diag(join '', @failed_requests);

# wait for every event to be delivered (or dead)
my $in = join ',', map { sql_quote($_->{id}) } @objs;
my $rows;
wait_for(sub {
    $rows = outbox("SELECT id, txn, oid, state, attempts FROM et_event WHERE oid IN ($in) "
                   . "ORDER BY id");
    @$rows == @objs * $CHANGES && !grep { $_->{state} == 0 } @$rows
}, 90);
is(scalar(grep { $_->{state} == 1 } @$rows), @objs * $CHANGES,
   'every event delivered, none dead') or diag(explain [grep { $_->{state} != 1 } @$rows]);

my %row_of_txn = map { ($_->{txn} => $_) } @$rows;
my($faults, $resets) = (0, 0);
for my $o (@objs) {
    my $n = "$o->{object} $o->{id}";
    my @att = attempts_of($o->{id});
    my @seqs = map { my $b = eval { json_text($_->{body}) }; $b ? $b->{seq} // -1 : -1 } @att;
    my @delivered = map { $seqs[$_] } grep { ($att[$_]{answer} // '') eq '200' } 0 .. $#att;
    my @bad_steps = grep { $seqs[$_] < $seqs[$_ - 1] } 1 .. $#seqs;
    my $f = grep { ($_->{answer} // '') ne '200' } @att;
    $faults += $f;
    $resets += grep { ($_->{answer} // '') eq 'reset' } @att;

    cmp_ok($f, '>=', 5, "$n: failures were injected ($f)");
    is(scalar @bad_steps, 0, "$n: calls never went back to an earlier change")
        or diag(fmt_attempts(@att) . "\nseq: @seqs");
    is("@delivered", join(' ', 0 .. $CHANGES - 1),
       "$n: the changes were delivered in the order the console saw them, each once")
        or diag("delivered: @delivered");

    # capture order (outbox ids) = the console's order, and the deliveries
    # follow it
    my @mine = grep { $_->{oid} eq $o->{id} } @$rows;
    my @capture = map { $_->{txn} } @mine;
    my @arrival = map { txn_of($att[$_]) } grep { ($att[$_]{answer} // '') eq '200' } 0 .. $#att;
    is("@arrival", "@capture", "$n: delivered in capture (outbox) order");

    my @events = map { event_of($att[$_]) } grep { ($att[$_]{answer} // '') eq '200' } 0 .. $#att;
    ok(@events == $CHANGES && $events[0] eq 'post-create' && $events[-1] eq 'post-delete'
       && !grep({ $_ ne 'post-update' } @events[1 .. $#events - 1]),
       "$n: create first, delete last") or diag("@events");
}

# all attempts counted
my $calls = grep { $_->{path} =~ m{^\Q$ROOT\E/} } calls(fault_log());
my $attempts = 0;
$attempts += $_->{attempts} for @$rows;
cmp_ok($calls - $attempts, '>=', 0, "the outbox counts the attempts ($attempts for $calls calls)");
cmp_ok($calls - $attempts, '<=', $resets,
       "calls beyond the attempts: only libcurl resending after a reset ($resets) on a reused connection");
cmp_ok($faults, '>=', 5 * @objs, "$faults failures in all");

stop_proc($receiver);
