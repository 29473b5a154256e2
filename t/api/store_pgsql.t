# Fail closed with a PostgreSQL outbox (mod_eventtrigger_guard.c): its
# server is stopped in the middle of a load of creates and started again.
# While it is down, the creates are refused with 503 before the console
# (EventTriggerStoreFailure refuse), none is saved without its event, and
# once it is back they are admitted again within a second or so and every
# stored event is delivered. A site with EventTriggerStoreFailure accept
# lets the change through while the server is down: its loss is logged
# (ET00032) and counted on the status page, which answers 503 then but
# still shows the outbox's state and the counts.
#
# Without the local spool (EventTriggerSpool off): a request admitted just
# before the server went away is saved by the console and its event lost
# (ET00032, at most the requests in flight); t/api/store_spool.t shows the
# same with the spool, where none is.
#
# Its own PostgreSQL server (initdb, pg_ctl, in t/tmp) and its own httpd
# (ETOps::mini_httpd_*), as .ci/run starts one for the unit tests.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use ETPg qw(:all);
use File::Path qw(make_path remove_tree);
use JSON::PP ();
use LWP::UserAgent ();
use POSIX qw(WNOHANG);
use Time::HiRes ();

my $why = pg_skip_reason();
plan skip_all => $why if $why;
plan skip_all => 'the in-process console is not built'
    unless -e ETOps::console_so();
plan tests => 18;

my $port = ops_define('ET_FC_PORT');
my $port2 = ops_define('ET_FC_PORT2');
my $cport = ops_define('ET_FC_CONSOLE_PORT');
my $rport = ops_define('ET_FC_RECEIVER_PORT');
my $pgport = ops_define('ET_FC_PG_PORT');
my $dir = t_path('t_dir', 'tmp', 'store_pgsql');
remove_tree($dir);
make_path("$dir/logs", "$dir/pg");
my $record = "$dir/console.jsonl";
my $rlog = "$dir/receiver.jsonl";
my $json = JSON::PP->new->canonical;

pg_init("$dir/pg", $pgport);

my $console = recording_console($cport, $record, "$dir/logs/console.out");
my $receiver = start_receiver(port => $rport, log => $rlog, truncate => 1);

my $conf = mini_httpd_conf($dir, [$port, $port2], <<"CONF");
@{[mini_proxy_lines()]}
LogLevel info eventtrigger:info
EventTriggerStore "pgsql:host=127.0.0.1 port=$pgport user=et dbname=postgres connect_timeout=2"
EventTriggerPollInterval 200ms
EventTriggerSpool off
EventTriggerSiteName fc-pg
EventTriggerEndpoint http://127.0.0.1:$rport/hooks/pg
EventTriggerFormat json
ProxyPass /proxy/ http://127.0.0.1:$cport/proxy/
<Location /proxy/member>
    EventTrigger member
</Location>
<Location /et-status>
    SetHandler eventtrigger-status
</Location>
<VirtualHost 127.0.0.1:$port2>
    EventTriggerSiteName fc-pg-accept
    EventTriggerEndpoint http://127.0.0.1:$rport/hooks/pga
    EventTriggerFormat json
    EventTriggerStoreFailure accept
    ProxyPass /proxy/ http://127.0.0.1:$cport/proxy/
</VirtualHost>
CONF
my $pid = mini_httpd_start($conf, $port, "$dir/logs/stdout");
my $ua = LWP::UserAgent->new(timeout => 10);

# Two workers, one create after the other each, until the stop file is
# there; one line per answer: "ID STATUS TXN-NULL".
my $stop = "$dir/stop";
my @workers;
for my $w (1 .. 2) {
    my $kid = fork // die "fork: $!";
    unless ($kid) {
        my $wua = LWP::UserAgent->new(timeout => 15, keep_alive => 1);
        open my $out, '>>', "$dir/load-$w" or POSIX::_exit(1);
        $out->autoflush(1);
        for (my $n = 1; !-e $stop; $n++) {
            my $id = "pg-$w-$n";
            my $r = $wua->post("http://127.0.0.1:$port/proxy/member",
                               'Content-Type' => 'application/json',
                               Content => qq({"id":"$id","n":$n}));
            my $b = eval { $json->decode($r->content) } // {};
            printf $out "%s %d %d\n", $id, $r->code,
                (exists $b->{txn} && !defined $b->{txn}) ? 1 : 0;
        }
        POSIX::_exit(0);
    }
    push @workers, $kid;
}
sub answers {
    my @a;
    for my $w (1 .. 2) {
        open my $fh, '<', "$dir/load-$w" or next;
        while (<$fh>) {
            next unless /\n\z/;
            my($id, $code, $null) = split;
            push @a, { id => $id, code => $code, null => $null,
                       t => Time::HiRes::time() };
        }
    }
    return @a;
}

ok(wait_for(sub { grep { $_->{code} == 201 } answers() }, 10),
   'creates are saved while the database answers');
wait_for(sub { grep({ $_->{code} == 201 } answers()) >= 20 }, 10);

# The server stops in the middle of the load.
pg_stop('fast');
my $down_at = Time::HiRes::time();
my $refused = wait_for(sub { grep { $_->{code} == 503 } answers() }, 5);
ok($refused, sprintf('the server stopped: creates are refused with 503 (after %.2f s)',
                     Time::HiRes::time() - $down_at));
# down a while, under load
my $n503 = scalar grep { $_->{code} == 503 } answers();
wait_for(sub { grep({ $_->{code} == 503 } answers()) >= $n503 + 20 }, 10);

# The accept site lets a change through, and its event is lost.
my $res = $ua->post("http://127.0.0.1:$port2/proxy/member",
                    'Content-Type' => 'application/json',
                    Content => '{"id":"accepted-while-down"}');
is($res->code, 201, 'EventTriggerStoreFailure accept: the change goes through');
ok(wait_for(sub { grep { /ET00032: .*id=accepted-while-down/ } read_lines("$dir/logs/error_log") }, 10),
   '  and its loss is logged (ET00032)');
$res = $ua->get("http://127.0.0.1:$port/et-status?json");
is($res->code, 503, 'the status page answers 503 while the outbox cannot be read');
my $st = eval { $json->decode($res->content) };
is($st && $st->{outbox}{state}, 'down', '  and shows the outbox down')
    or diag($res->content);
my($acc) = $st ? grep { $_->{site} eq 'fc-pg-accept' } @{ $st->{sites} } : ();
my($ref) = $st ? grep { $_->{site} eq 'fc-pg' } @{ $st->{sites} } : ();
ok($acc && $acc->{lost} >= 1, '  the accepted change counted as lost')
    or diag($json->encode($acc // {}));
ok($ref && $ref->{refused} >= 20, '  the refused requests counted')
    or diag($json->encode($ref // {}));
ok(scalar(grep { /ET00093: the outbox's database does not answer/ } read_lines("$dir/logs/error_log")),
   'ET00093: the database does not answer');

# Started again: admitted within a second or so.
pg_start();
my $up_at = Time::HiRes::time();
my $back = wait_for(sub {
    grep { $_->{code} == 201 && $_->{t} > $up_at } answers();
}, 10);
my $took = Time::HiRes::time() - $up_at;
ok($back, 'the server is back: creates are saved again');
cmp_ok($took, '<', 2, sprintf('  within a second or so (%.2f s)', $took));
wait_for(sub { grep({ $_->{code} == 201 && $_->{t} > $up_at } answers()) >= 10 }, 10);
open my $sfh, '>', $stop or die;
close $sfh;
for my $k (@workers) {
    wait_for(sub { waitpid($k, WNOHANG) == $k }, 20) or kill KILL => $k;
}

my @all = answers();
my %code = map { $_->{id} => $_->{code} } @all;
is(scalar(grep { $_->{code} != 201 && $_->{code} != 503 } @all), 0,
   sprintf('every create answered 201 or 503 (%d, %d refused)', scalar @all,
           scalar grep { $_->{code} == 503 } @all));
ok(!grep({ $_->{code} == 503 && !$_->{null} } @all), "  every 503 is the module's (txn null)");
my %seen;
{
    open my $fh, '<', $record or die "$record: $!";
    while (<$fh>) { my $r = $json->decode($_); $seen{ $r->{id} }++ }
}
is(scalar(grep { $_->{code} == 503 && $seen{ $_->{id} } } @all), 0,
   'the console saw none of the refused creates');

# None saved without its event (but those in flight as the server went
# down, each logged ET00032 and counted: see docs/reliability.md).
my %stored = map { $_ => 1 } psql("SELECT oid FROM et_event WHERE site = 'fc-pg'");
my @lost_log = map { /id=(\S+)\)/ ? $1 : () }
               grep { /ET00032: .*site=fc-pg / } read_lines("$dir/logs/error_log");
my @missing = grep { !$stored{$_} } grep { /^pg-/ } keys %seen;
my %lost = map { $_ => 1 } @lost_log;
is(scalar(grep { !$lost{$_} } @missing), 0,
   sprintf('every create the console saw is stored, or logged lost (%d of %d lost)',
           scalar @missing, scalar grep { /^pg-/ } keys %seen))
    or diag("missing, not logged: @{[grep { !$lost{$_} } @missing]}");
cmp_ok(scalar @missing, '<=', 2,
       '  lost: at most the creates in flight as the server went down (2 workers)');
$st = eval { $json->decode($ua->get("http://127.0.0.1:$port/et-status?json")->content) };
($ref) = $st ? grep { $_->{site} eq 'fc-pg' } @{ $st->{sites} } : ();
is($ref && $ref->{lost}, scalar @lost_log, '  the status page counts them');

# Delivery resumes: every stored event of the site reaches the receiver.
my $delivered = wait_for(sub {
    my %got;
    for my $c (calls($rlog)) {
        my @segs = split m{/}, $c->{path};
        $got{ seg_decode($segs[-1]) }++;
    }
    !grep { !$got{$_} } keys %stored;
}, 30);
ok($delivered, sprintf('delivery resumes: all %d stored events delivered',
                       scalar keys %stored));

mini_httpd_stop($pid);
stop_proc($receiver);
stop_proc($console);
