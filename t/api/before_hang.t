# A before-save endpoint that hangs must not take the server down: 100
# parallel admin requests to the guarded location (site et_before: a 1 s
# EventTriggerBeforeTimeout, at most 4 calls at once per child) are each
# answered 503 by the deadline plus a margin, and meanwhile an unguarded
# location and the status page keep answering quickly.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use HTTP::Request ();
use JSON::PP ();
use LWP::UserAgent ();
use POSIX ();
use Time::HiRes ();
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

my $N = 100;
my $ROOT = '/hooks/before';
my $UA = LWP::UserAgent->new(timeout => 30, keep_alive => 0);
my $PLAN = 'http://127.0.0.1:' . define('ET_RECEIVER_PORT') . '/_plan';
my $res = $UA->request(HTTP::Request->new(PUT => $PLAN,
    ['Content-Type' => 'application/json'],
    JSON::PP->new->encode({ path => "$ROOT/v1/member", actions => [],
                            default => { hang => 20 } })));
ok($res->is_success, 'the endpoint hangs every pre-create for 20 s');

# the guarded requests, each in a process of its own
pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $i (1 .. $N) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $rd;
        my $ua = LWP::UserAgent->new(timeout => 30, keep_alive => 0);
        my $t0 = Time::HiRes::time();
        my $r = $ua->request(HTTP::Request->new(
            POST => site_url('et_before', "/proxy/member?u=hang-$i"),
            ['Content-Type' => 'application/json'], qq({"id":"hang-$$-$i"})));
        syswrite $wr, sprintf("%d %.3f\n", $r->code, Time::HiRes::time() - $t0);
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;

# meanwhile: the unguarded location and the status page
my(@fast, @status);
my $until = Time::HiRes::time() + 2.5;
while (Time::HiRes::time() < $until) {
    my $t0 = Time::HiRes::time();
    my $r = request('et_before', POST => '/proxy/application',
                    json => { id => uniq('meanwhile') });
    push @fast, [$r->code, Time::HiRes::time() - $t0];
    $t0 = Time::HiRes::time();
    $r = request('main', GET => '/et-status?json');
    push @status, [$r->code, Time::HiRes::time() - $t0];
    Time::HiRes::sleep(0.05);
}
my @answers;
while (my $line = <$rd>) {
    push @answers, [split ' ', $line];
}
waitpid $_, 0 for @kids;

is(scalar @answers, $N, "all $N guarded requests were answered");
is(scalar(grep { $_->[0] == 503 } @answers), $N, 'each with 503 (failure policy refuse)')
    or diag(explain [map { $_->[0] } @answers]);
my($slowest) = sort { $b <=> $a } map { $_->[1] } @answers;
cmp_ok($slowest, '<', 1 + 2.0, 'each within the 1 s deadline plus a margin')
    or diag("slowest: ${slowest}s");
ok(@fast >= 5, 'the unguarded location was asked meanwhile (' . scalar(@fast) . ' times)');
is(scalar(grep { $_->[0] != 201 } @fast), 0, 'and always answered');
my($fslow) = sort { $b <=> $a } map { $_->[1] } @fast;
cmp_ok($fslow, '<', 1.0, 'quickly (slowest under 1 s, though the guarded endpoint hangs)')
    or diag("slowest: ${fslow}s");
is(scalar(grep { $_->[0] != 200 } @status), 0, 'the status page answered throughout');

# the concurrency limit: most requests did not wait for the endpoint at all
my $at_once = grep { /ET00071: .*under way in this process/ }
    do { open my $fh, '<', t_path('t_logs', 'error_log'); <$fh> };
cmp_ok($at_once, '>', 0, 'requests beyond EventTriggerBeforeConcurrency failed at once');

$UA->request(HTTP::Request->new(DELETE => $PLAN));
done_testing();
