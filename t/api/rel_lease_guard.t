# Claim-ahead never calls an event twice. The dispatcher leases a few
# events beyond its free workers; one that waits in the queue behind slow
# calls until its lease could run out mid-call goes back in line untried
# (ET01019) instead of being called on an expiring lease (which another
# claim could take: a second call). A standalone httpd (EventTriggerWorkers
# and EventTriggerLease are per instance): one worker, a 3 s lease, a 2 s
# timeout, and a receiver that answers each call after 1.5 s. Three events
# are claimed together (no call has been timed yet); the second and third
# start 1.5 s and 3 s after the claim, past lease - timeout = 1 s: they go
# back, and are delivered afterwards, one call each.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);

plan tests => 6;

my %P;
# (not a map over qw(): reading the configuration assigns $_)
for my $name (qw(ET_REL_MINI_PORT ET_REL_MINI_RECEIVER_PORT)) {
    $P{$name} = ops_define($name);
}
my $dir = t_path('t_dir', 'tmp', 'rel_lease_guard');
remove_tree($dir);
make_path("$dir/logs");
my $rlog = receiver_log('-slow');
my $rpid = start_receiver(port => $P{ET_REL_MINI_RECEIVER_PORT}, log => $rlog,
                          truncate => 1, delay => 1.5);

my $conf = mini_httpd_conf($dir, [$P{ET_REL_MINI_PORT}], <<"EOF");
LogLevel warn eventtrigger:info
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerWorkers 1
EventTriggerLease 3s
EventTriggerTimeout 2s
EventTriggerConnectTimeout 1s
EventTriggerPollInterval 200ms
EventTriggerSiteName lease-guard
EventTriggerEndpoint http://127.0.0.1:$P{ET_REL_MINI_RECEIVER_PORT}/hooks/slow
@{[MINI_CONSOLE]}
EOF
my $pid = mini_httpd_start($conf, $P{ET_REL_MINI_PORT}, "$dir/logs/stdout");

# three objects at once: the dispatcher claims them in one round
my @ids = map { uniq('guard') } 1 .. 3;
is(mini_post_members($P{ET_REL_MINI_PORT}, @ids), 3,
   'the console saved three objects');

my($done, $rows) = mini_wait_delivered("$dir/outbox.db", 40, ', attempts', @ids);
ok($done, 'all three delivered in the end') or diag(explain $rows);

my @counts = map { scalar calls_for_id($_, $rlog) } @ids;
is_deeply(\@counts, [1, 1, 1], 'each called exactly once')
    or diag(explain \@counts);

my @log = do { open my $l, '<', "$dir/logs/error_log" or die $!; <$l> };
my @guard = grep { /ET01019: txn=\S+ waited for a free worker/ } @log;
cmp_ok(scalar @guard, '>=', 1,
       'a queued event whose lease would run out went back untried (ET01019)')
    or diag(join '', grep { /eventtrigger/ } @log);
is(scalar(grep { /ET01002/ } @log), 0, 'no lease expired during a call (ET01002)');
# going back in line untried does not use up an attempt
is(scalar(grep { $_->{attempts} != 1 } @$rows), 0,
   'each took one attempt: going back in line cost none')
    or diag(explain $rows);

mini_httpd_stop($pid);
stop_proc($rpid);
