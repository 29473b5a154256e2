# Fail closed (mod_eventtrigger_guard.c): an SQLite outbox that cannot be
# written (its file made read-only: a lost permission) refuses every write
# request of a mapped location with 503, Retry-After and
# {"error": ..., "txn": null} before the console sees it - proxied and
# in-process alike - while reads, unmapped locations and a site with
# EventTriggerStoreFailure accept go through; it says so once a second with
# a count (ET00093, ET00095), the status page shows the state and the
# counts in its three formats, and once the file is writable again
# requests are admitted within a second, without a restart, and every
# change the console made is delivered.
#
# A standalone httpd (ETOps::mini_httpd_*): the test makes its outbox fail.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);
use JSON::PP ();
use LWP::UserAgent ();
use Time::HiRes ();

plan skip_all => 'the in-process console is not built'
    unless -e ETOps::console_so();
plan skip_all => 'running as root: a read-only file is writable by root'
    if $> == 0;
plan tests => 37;

my $port = ops_define('ET_FC_PORT');
my $port2 = ops_define('ET_FC_PORT2');
my $cport = ops_define('ET_FC_CONSOLE_PORT');
my $rport = ops_define('ET_FC_RECEIVER_PORT');
my $dir = t_path('t_dir', 'tmp', 'store_failure');
remove_tree($dir);
make_path("$dir/logs", "$dir/state");
my $record = "$dir/console.jsonl";
my $rlog = "$dir/receiver.jsonl";
my $db = "$dir/state/outbox.db";

my $console = recording_console($cport, $record, "$dir/logs/console.out");
my $receiver = start_receiver(port => $rport, log => $rlog, truncate => 1);

my $conf = mini_httpd_conf($dir, [$port, $port2], <<"CONF");
@{[mini_proxy_lines()]}
LogLevel info eventtrigger:info
EventTriggerStore sqlite3:$db
EventTriggerStoreReserve 64K
EventTriggerPollInterval 200ms
EventTriggerSiteName fc-refuse
EventTriggerEndpoint http://127.0.0.1:$rport/hooks/refuse
EventTriggerFormat json
@{[MINI_CONSOLE]}
ProxyPass /proxy/ http://127.0.0.1:$cport/proxy/
<Location /proxy/member>
    EventTrigger member
</Location>
<Location /et-status>
    SetHandler eventtrigger-status
</Location>
<VirtualHost 127.0.0.1:$port2>
    EventTriggerSiteName fc-accept
    EventTriggerEndpoint http://127.0.0.1:$rport/hooks/accept
    EventTriggerFormat json
    EventTriggerStoreFailure accept
    ProxyPass /proxy/ http://127.0.0.1:$cport/proxy/
</VirtualHost>
CONF
my $pid = mini_httpd_start($conf, $port, "$dir/logs/stdout");
my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 1);
my $json = JSON::PP->new->canonical;

sub post {
    my($path, $id, $p) = @_;
    return $ua->post("http://127.0.0.1:@{[$p // $port]}$path",
                     'Content-Type' => 'application/json',
                     Content => $json->encode({ id => $id, name => "n $id" }));
}
sub seen {
    open my $fh, '<', $record or return {};
    my %s;
    while (<$fh>) { my $r = $json->decode($_); $s{ $r->{id} }++ }
    return \%s;
}
sub errlog { read_lines("$dir/logs/error_log") }
sub delivered_ids {
    my %d;
    for my $c (calls($rlog)) {
        my @segs = split m{/}, $c->{path};
        $d{ seg_decode($segs[-1]) }++;
    }
    return \%d;
}

my $tag = sprintf '%x', $$;
my @saved;    # ids the console saved (2xx): each must be delivered

# 1. Writable: both consoles save, and the reserve is held.
is(post('/proxy/member', "ok-p-$tag")->code, 201, 'writable: proxied create 201');
is(post('/inproc/member', "ok-i-$tag")->code, 201, 'writable: in-process create 201');
push @saved, "ok-p-$tag", "ok-i-$tag";
ok(-s "$db.reserve" >= 64 * 1024, 'the reserve is held beside the outbox');

# 2. The outbox file loses its write permission.
chmod 0444, $db or die "chmod $db: $!";
my $t0 = Time::HiRes::time();
my($n, $first) = (0, undef);
wait_for(sub {
    my $id = "probe-$tag-" . ++$n;
    my $res = post('/proxy/member', $id);
    push @saved, $id if $res->is_success;
    return ($first = $res) if $res->code == 503;
    return 0;
}, 5);
my $took = Time::HiRes::time() - $t0;
ok($first && $first->code == 503, 'read-only outbox: a proxied create gets 503')
    or diag($first ? $first->as_string : 'no 503 within 5 s');
cmp_ok($took, '<', 1.5, sprintf('  within a second or so (%.2f s)', $took));
is($first && $first->header('Retry-After'), 5, '  with Retry-After');
like($first && $first->header('Content-Type') // '', qr{^application/json},
     '  as JSON');
my $body = $first ? eval { $json->decode($first->content) } : undef;
ok($body && defined $body->{error} && $body->{error} =~ /not writable/
   && exists $body->{txn} && !defined $body->{txn},
   '  {"error": "...not writable...", "txn": null}')
    or diag($first ? $first->content : '');

my @refused = map { "refused-$tag-$_" } 1 .. 20;
my @codes = map { post('/proxy/member', $_)->code } @refused;
is(scalar(grep { $_ == 503 } @codes), 20, '20 more proxied creates: all 503')
    or diag("@codes");
my $res = post('/inproc/member', "refused-i-$tag");
push @refused, "refused-i-$tag";
is($res->code, 503, 'an in-process create: 503');
$body = eval { $json->decode($res->content) };
ok($body && !defined $body->{txn} && !exists $body->{id},
   "  the module's answer, not the console's object") or diag($res->content);
my $seen = seen();
is(scalar(grep { $seen->{$_} } @refused), 0,
   'the console saw none of the refused requests');

# Reads, unmapped locations and the accept site are not affected.
is($ua->get("http://127.0.0.1:$port/inproc/member/ok-p-$tag")->code, 200,
   'a read: 200');
is(post('/inproc/other', "unmapped-$tag")->code, 201,
   'an unmapped location: 201');
$res = post('/proxy/member', "accept-$tag", $port2);
is($res->code, 201, 'EventTriggerStoreFailure accept: the change goes through');
push @saved, "accept-$tag";

# Said, once a second at most, with a count and why.
my @log = errlog();
is(scalar(grep { /ET00093: the outbox is not writable/ } @log), 1,
   'ET00093 once: the outbox is not writable, requests are refused')
    or diag(join '', grep { /ET000/ } @log);
my @lines = grep { /ET00095: refused \d+ write request/ } @log;
ok(@lines >= 1 && @lines <= 1 + int(Time::HiRes::time() - $t0 + 1),
   sprintf('ET00095 at most once a second (%d lines)', scalar @lines));
ok(scalar(grep { /ET00095: .*the outbox is not writable; the console did not see them/ } @lines),
   '  saying why');

# The status page: the outbox's state and the counts.
my $st = eval { $json->decode($ua->get("http://127.0.0.1:$port/et-status?json")->content) };
is($st && $st->{outbox}{state}, 'read-only', 'status ?json: outbox read-only');
ok($st && !$st->{outbox}{writable} && $st->{outbox}{refusing_since} >= int($t0),
   '  not writable, refusing since the change');
# read-only, not full: the reserve is held, the dispatcher goes on
ok($st && exists $st->{outbox}{deliveries_held_back}
       && !$st->{outbox}{deliveries_held_back},
   '  deliveries not held back (the reserve is held)');
my($site) = $st ? grep { $_->{site} eq 'fc-refuse' } @{ $st->{sites} } : ();
ok($site && $site->{refused} >= 22 && $site->{lost} == 0,
   '  site fc-refuse: the refused requests counted, none lost')
    or diag($json->encode($site // {}));
my $prom = $ua->get("http://127.0.0.1:$port/et-status?prometheus")->content;
like($prom, qr/^eventtrigger_outbox_writable 0$/m, 'status ?prometheus: not writable');
like($prom, qr/^eventtrigger_deliveries_held_back 0$/m, '  deliveries not held back');
like($prom, qr/^eventtrigger_refused_total\{site="fc-refuse"\} (?:2[2-9]|[3-9]\d)$/m,
     '  refused requests counted');
like($ua->get("http://127.0.0.1:$port/et-status")->content,
     qr/Outbox: <b>read-only<\/b>.*refusing since/, 'status HTML: read-only, refusing since');

# 3. Writable again: admitted within a second, no restart.
chmod 0640, $db or die "chmod $db: $!";
$t0 = Time::HiRes::time();
$n = 0;
my $back = wait_for(sub {
    my $id = "back-$tag-" . ++$n;
    my $r = post('/proxy/member', $id);
    push @saved, $id if $r->is_success;
    return $r->code == 201;
}, 5);
$took = Time::HiRes::time() - $t0;
ok($back, 'writable again: creates succeed without a restart');
cmp_ok($took, '<', 1.5, sprintf('  within a second or so (%.2f s)', $took));
is(post('/inproc/member', "back-i-$tag")->code, 201, '  in-process too');
push @saved, "back-i-$tag";
ok(scalar(grep { /ET00094: the outbox is writable again/ } errlog()),
   'ET00094: writable again');

# Every change the console saved is delivered; nothing refused is.
my $all = wait_for(sub {
    my $d = delivered_ids();
    !grep { !$d->{$_} } @saved;
}, 20);
ok($all, sprintf('all %d saved changes delivered', scalar @saved))
    or diag('missing: ' . join ' ', grep { !delivered_ids()->{$_} } @saved);
my $d = delivered_ids();
is(scalar(grep { $d->{$_} } @refused), 0, 'no refused request was delivered');
is(scalar(grep { /ET00032/ } errlog()), 0, 'no event lost (ET00032)');
$seen = seen();
is(scalar(grep { !$d->{$_} } grep { $_ ne "unmapped-$tag" } keys %$seen), 0,
   'every create the console saw was delivered');

mini_httpd_stop($pid);
stop_proc($receiver);
stop_proc($console);

# The directives are checked at startup, with the file and line.
for my $case (['EventTriggerStoreFailure maybe', qr/EventTriggerStoreFailure: 'maybe' is neither refuse nor accept/],
              ['EventTriggerStoreReserve 10K', qr/EventTriggerStoreReserve: '10K' is not a size between 64K and 64G/],
              ["<VirtualHost 127.0.0.1:$port2>\n    EventTriggerStoreReserve 1M\n</VirtualHost>",
               qr/EventTriggerStoreReserve is only allowed in the main server/]) {
    my($text, $re) = @$case;
    my $bad = mini_httpd_conf($dir, [$port], "EventTriggerStore sqlite3:$db\n$text\n");
    my($rc, $out) = ETOps::apache2_run('-t', '-f', $bad);
    ok($rc != 0 && $out =~ $re && $out =~ /httpd\.conf/,
       "configtest refuses: $text") or diag($out);
}
