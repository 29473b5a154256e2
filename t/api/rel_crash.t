# Crashes and restarts lose nothing (site et_crash of
# t/conf/reliability.conf.in; EventTriggerLease 12s, EventTriggerTimeout 3s):
#
#  1. kill -9 of the dispatcher in the middle of a call (the receiver is
#     slow, so the call is surely under way): httpd forks a new dispatcher
#     (ET00043), which delivers other objects at once and the interrupted
#     event after its lease expired, with the same txn; a later change of
#     the same object waits for it.
#  2. kill -9 of httpd children under load,
#  3. child recycling (MaxConnectionsPerChild, set through
#     t/state/reliability-mpm.conf and a graceful restart),
#  4. graceful restart (USR1) and restart (HUP) under load with calls in
#     flight:
# every change the console confirmed is delivered, each object's changes
# in order; a change whose request died with its child is delivered if it
# was stored.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use POSIX ();
use File::Temp ();
use Time::HiRes ();
use ETTest qw(:all);
use ETRel qw(:all);

my $ROOT = '/hooks/crash';
# EventTriggerLease of t/conf/reliability.conf.in
my $LEASE = do {
    open my $fh, '<', t_path('t_conf', 'reliability.conf') or die "reliability.conf: $!";
    my($l) = map { /^\s*EventTriggerLease\s+(\d+)s\b/ ? $1 : () } <$fh>;
    $l // die "no EventTriggerLease in t/conf/reliability.conf";
};
my $SLACK = 3;
my $MPM_CONF = t_path('t_state', 'reliability-mpm.conf');

plan tests => 8 + 4 + 6 + 5 + 2;

unlink $MPM_CONF;
END { unlink $MPM_CONF if defined $MPM_CONF && -e $MPM_CONF }

start_console();
my $receiver = start_fault_receiver(truncate => 1);
my $mark = errlog_mark();

sub post {
    my($id, %data) = @_;
    return request('et_crash', POST => '/inproc/member', json => { id => $id, %data });
}

# -- 1. kill -9 the dispatcher mid-call --------------------------------------------------
{
    my $k = uniq('crash-k');
    set_plan({ path => "$ROOT/v1/member/$k", actions => [{ hang => 2.5 }], default => 200 });
    is(post($k, seq => 0)->code, 201, 'dispatcher kill: create answered');
    my @first = wait_attempts($k, n => 1, timeout => 20);
    my $d1 = dispatcher_pid();
    ok(@first && $d1 && kill(KILL => $d1), "dispatcher kill: the call is under way; kill -9 "
       . ($d1 // '?'));
    my $t_kill = Time::HiRes::time();

    # an update of the same object, and a new object, right after the kill
    request('et_crash', PUT => "/inproc/member/$k", json => { seq => 1 });
    my $other = uniq('crash-other');
    post($other);

    my $d2;
    wait_for(sub { $d2 = dispatcher_pid(); $d2 && $d2 != $d1 }, 20);
    ok($d2 && $d2 != $d1 && errlog_count($mark, qr/ET00043: dispatcher \(pid \Q$d1\E\) died/),
       "dispatcher kill: httpd started a new dispatcher (pid " . ($d2 // '?') . ", ET00043)");

    my $r_other = wait_row($other, 1, 10);
    my @oc = attempts_of($other);
    ok($r_other && @oc && $oc[0]{time} - $t_kill < $LEASE - 1,
       'dispatcher kill: another object is delivered at once, not after the lease')
        or diag(@oc ? sprintf('%.3fs after the kill', $oc[0]{time} - $t_kill) : 'no call');

    my $r_k;
    wait_for(sub {
        my $rows = outbox("SELECT state FROM et_event WHERE oid = " . sql_quote($k));
        @$rows == 2 && !grep { $_->{state} != 1 } @$rows
    }, $LEASE + 20);
    my @att = attempts_of($k);
    my @creates = grep { event_of($_) eq 'post-create' } @att;
    my $gap = @creates >= 2 ? $creates[1]{time} - $creates[0]{time} : -1;
    ok(@creates == 2 && txn_of($creates[0]) eq txn_of($creates[1]),
       'dispatcher kill: the interrupted call is made again, with the same txn')
        or diag(fmt_attempts(@att));
    ok(in_range($gap, $LEASE - 0.5, $LEASE + $SLACK),
       "dispatcher kill: ... once its lease (${LEASE}s) expired")
        or diag(sprintf("gap %.3fs\n", $gap) . fmt_attempts(@att));
    my $row = outbox("SELECT state, attempts FROM et_event WHERE oid = " . sql_quote($k)
                     . " AND event = 'post-create'")->[0];
    is_deeply($row, { state => 1, attempts => 2 },
              'dispatcher kill: delivered; the killed call counts as an attempt');
    my @ev = map { event_of($_) } @att;
    is("@ev", 'post-create post-create post-update',
       'dispatcher kill: the update waited for the create') or diag(fmt_attempts(@att));
}

# -- load: clients that change their own objects in order ----------------------------------
# load(tag, clients, objects per client, stop => sub, max => N): forks the
# clients; each cycles create, updates, delete over its objects, writing
# "oid seq code" lines. Returns a sub that waits for them and returns the
# lines.
sub load {
    my($tag, $clients, $per, %a) = @_;
    my $dir = File::Temp->newdir;
    my $stop = "$dir/stop";
    my @kids;
    for my $c (1 .. $clients) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = eval {
                open my $out, '>', "$dir/$c" or die $!;
                $out->autoflush(1);
                my @ids = map { uniq("$tag-$c-$_") } 1 .. $per;
                my %seq;
                my $n = 0;
                while (!-e $stop && $n < ($a{max} // 1e9)) {
                    my $id = $ids[$n++ % @ids];
                    my $s = $seq{$id}++;
                    my($m, $path) = $s == 0 ? (POST => '/inproc/member')
                        : (PUT => "/inproc/member/$id");
                    my $res = request('et_crash', $m => $path, json => { id => $id, seq => $s });
                    print $out "$id $s ", $res->code, "\n";
                }
                1;
            };
            POSIX::_exit($ok ? 0 : 1);
        }
        push @kids, $pid;
    }
    return sub {
        open my $fh, '>', $stop;
        close $fh;
        waitpid $_, 0 for @kids;
        my @lines;
        for my $c (1 .. $clients) {
            open my $in, '<', "$dir/$c" or next;
            push @lines, map { chomp; [split / /] } <$in>;
        }
        return \@lines;
    };
}

# check(name, lines): every confirmed change delivered, stored ones too,
# each object in order. Three tests.
sub check {
    my($name, $lines) = @_;
    my @confirmed = grep { $_->[2] =~ /^20[01]$/ } @$lines;
    my %ids = map { ($_->[0] => 1) } @$lines;
    my $in = join ',', map { sql_quote($_) } keys %ids;
    my $rows = [];
    wait_for(sub {
        $rows = outbox("SELECT oid, state FROM et_event WHERE oid IN ($in)");
        !grep { $_->{state} == 0 } @$rows
    }, $LEASE + 40);
    my @not = grep { $_->{state} != 1 } @$rows;
    ok(@$rows >= @confirmed && !@not,
       "$name: every stored event delivered (" . scalar(@$rows) . " stored, "
       . scalar(@confirmed) . " of " . scalar(@$lines) . " requests confirmed)")
        or diag(explain \@not);

    # the calls: seq per object, answered 200
    my(%got, %seqs);
    for my $c (calls(fault_log())) {
        next unless $c->{path} =~ m{^\Q$ROOT\E/v1/member/(.*)$} && $ids{ seg_decode($1) };
        my $id = seg_decode($1);
        my $b = eval { json_text($c->{body}) } or next;
        push @{ $seqs{$id} }, $b->{seq};
        $got{"$id $b->{seq}"}++ if ($c->{answer} // '') =~ /200$/;
    }
    my @lost = grep { !$got{"$_->[0] $_->[1]"} } @confirmed;
    is(scalar @lost, 0, "$name: every confirmed change arrived")
        or diag(join "\n", map { "@$_" } @lost[0 .. ($#lost > 9 ? 9 : $#lost)]);
    my @disorder = grep { my $s = $seqs{$_};
                          grep { $s->[$_] < $s->[$_ - 1] } 1 .. $#$s } keys %seqs;
    is(scalar @disorder, 0, "$name: each object's changes arrived in order")
        or diag(join "\n", map { "$_: @{ $seqs{$_} }" } @disorder);
    my $dups = grep { $_ > 1 } values %got;
    note("$name: $dups change(s) delivered twice (at-least-once)");
}

# -- 2. kill -9 httpd children under load ---------------------------------------------------
{
    set_plan({ prefix => "$ROOT/", actions => [], default => 200 });
    my $done = load('kill', 4, 3);
    wait_for(sub { (() = attempts_of_any()) >= 20 }, 20);
    my @killed;
    for (1 .. 3) {
        my @kids = httpd_children();
        my $victim = $kids[rand @kids];
        push @killed, $victim if $victim && kill KILL => $victim;
        my $n = calls_total();
        # until httpd serves again and more calls came in
        wait_for(sub { calls_total() >= $n + 10 }, 20);
    }
    my $lines = $done->();
    is(scalar @killed, 3, 'children: three killed with SIGKILL (' . join(' ', @killed) . ')');
    check('children killed', $lines);
}

sub calls_total { scalar grep { $_->{path} =~ m{^\Q$ROOT\E/} } calls(fault_log()) }
sub attempts_of_any { grep { $_->{path} =~ m{^\Q$ROOT\E/} } calls(fault_log()) }

# -- 3. child recycling: MaxConnectionsPerChild 5 ------------------------------------------
{
    open my $fh, '>', $MPM_CONF or die "$MPM_CONF: $!";
    print $fh "# written by t/api/rel_crash.t; removed at its end\nMaxConnectionsPerChild 5\n";
    close $fh;
    ok(httpd_signal_restart('USR1'), 'recycling: graceful restart with MaxConnectionsPerChild 5');
    my %seen;
    my $n0 = calls_total();
    my $done = load('recycle', 3, 2, max => 30);
    # watch the children while the 90 changes go through
    wait_for(sub { $seen{$_}++ for httpd_children(); calls_total() >= $n0 + 90 }, 60);
    my $lines = $done->();
    cmp_ok(scalar(keys %seen), '>=', 3, 'recycling: the children came and went ('
           . scalar(keys %seen) . ' seen)');
    check('recycling', $lines);
    unlink $MPM_CONF;
    ok(httpd_signal_restart('USR1'), 'recycling: back to no limit');
}

# -- 4. graceful restart and restart under load, calls in flight ------------------------------
{
    # one call in five takes 0.5s: some are under way at each restart
    set_plan({ prefix => "$ROOT/", actions => [],
               default => { random => [[4, 200], [1, { hang => 0.5 }]] } });
    my $done = load('restart', 4, 3);
    my $n = calls_total();
    wait_for(sub { calls_total() >= $n + 10 }, 20);
    $n = calls_total();
    ok(httpd_signal_restart('USR1'), 'restarts: graceful restart (USR1) under load');
    wait_for(sub { calls_total() >= $n + 10 }, 30);
    $n = calls_total();
    ok(httpd_signal_restart('HUP'), 'restarts: restart (HUP) under load');
    wait_for(sub { calls_total() >= $n + 10 }, 30);
    my $lines = $done->();
    check('restarts', $lines);
    clear_plans();
}

# -- nothing failed to be stored --------------------------------------------------------------
my @lost = errlog_since($mark, qr/ET0003[23]:/);
is(scalar @lost, 0, 'no event failed to be stored (ET00032, ET00033)') or diag(join '', @lost);
my @expired = errlog_since($mark, qr/ET01002:/);
is(scalar @expired, 0, 'no lease expired during a call (ET01002)') or diag(join '', @expired);

stop_proc($receiver);
