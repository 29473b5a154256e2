# TLS to the receiver, with certificates the test makes (t/lib/ETSecurity.pm:
# a test CA, server certificates for 127.0.0.1/localhost, for another host
# name, from an unknown CA and an expired one, a client certificate) and
# t/bin/tls_receiver.py:
#  - a valid chain (EventTriggerCAFile) is accepted, by IP and by name;
#  - mutual TLS (EventTriggerClientCert, cert and key in two files or one)
#    is accepted by a receiver that requires a client certificate;
#  - a wrong host name, an unknown CA, an expired certificate, and no client
#    certificate where one is required are refused: never delivered, retried
#    on the schedule (pending, not dead, until the last attempt), then dead
#    with the TLS error kept;
#  - EventTriggerTLSVerify off delivers to the unknown CA's receiver, and
#    httpd warns about it at startup (ET00013; a check_config message, so on
#    httpd's stderr, as with httpd -t).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);

my @refused = (
    # [site, receiver, TLS error (libcurl's words), handshake the receiver saw]
    # (libcurl checks the name after the handshake and just closes)
    ['et_sec_tls_host', 'host', qr/subject name|host name|hostname/i, qr/certificate|alert|EOF|closed/i],
    ['et_sec_tls_unknown', 'unknown', qr/issuer|unknown ca|self.signed|verify/i, qr/unknown ca|alert|certificate/i],
    ['et_sec_tls_expired', 'expired', qr/expired/i, qr/expired|alert|certificate/i],
    ['et_sec_tls_mtls_none', 'mtls', qr/alert|handshake|certificate|SSL|reset|closed|recv|send/i,
     qr/certificate|peer did not return/i],
);
plan tests => 4 * 3 + 1 + @refused * 6 + 3;

ETSecurity::setup();
start_console();

my %rcv = (
    ok => { port => sdefine('ET_SEC_TLS_OK_PORT'), cert => 'server' },
    host => { port => sdefine('ET_SEC_TLS_HOST_PORT'), cert => 'wronghost' },
    unknown => { port => sdefine('ET_SEC_TLS_UNKNOWN_PORT'), cert => 'unknown' },
    expired => { port => sdefine('ET_SEC_TLS_EXPIRED_PORT'), cert => 'expired' },
    mtls => { port => sdefine('ET_SEC_TLS_MTLS_PORT'), cert => 'server', client_ca => 'ca' },
);
for my $n (sort keys %rcv) {
    $rcv{$n}{log} = receiver_log("-tls-$n");
    start_tls_receiver(%{ $rcv{$n} });
}

sub row_of {
    my $id = shift;
    return outbox("SELECT state, attempts, last_status, last_error FROM et_event "
                  . "WHERE oid = " . sql_quote($id))->[0];
}

my $u = uniq('tls');
my $status_before = status_json();

# -- accepted ------------------------------------------------------------------------------
for my $t (['et_sec_tls_ok', 'ok', '/hooks/tls-ok', undef],
           ['et_sec_tls_localhost', 'ok', '/hooks/tls-localhost', undef],
           ['et_sec_tls_mtls', 'mtls', '/hooks/tls-mtls', 'commonName=et-client'],
           ['et_sec_tls_mtls_one', 'mtls', '/hooks/tls-mtls-one', 'commonName=et-client']) {
    my($site, $r, $root, $client) = @$t;
    my $id = "$site-$u";
    my $obj = { id => $id, name => 'over TLS' };
    my $res = request($site, POST => '/inproc/member', json => $obj);
    my $calls = wait_calls($id, log => $rcv{$r}{log});
    my $c = $calls->[0] || {};
    my %q = parse_query($c->{query});
    ok(@$calls == 1 && $c->{method} eq 'PUT'
       && $c->{path} eq "$root/v1/member/$id" && ($q{event} // '') eq 'post-create'
       && canon(eval { json_text($c->{body}) }) eq canon(expected_object($obj, 'member')),
       "$site: the call arrived over TLS") or diag(explain $calls);
    if ($client) {
        is($c->{client_cert}, $client, "$site: with the client certificate (mutual TLS)");
    }
    else {
        like($c->{tls_version} // '', qr/^TLSv1\.[23]$/, "$site: TLS 1.2 or 1.3 ($c->{tls_version})");
    }
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 1 }, 10);
    is($row && $row->{state}, 1, "$site: delivered") or diag(explain $row);
}

# -- refused and retried -------------------------------------------------------------------
# EventTriggerRetry 0 700ms 700ms 700ms: four attempts, then dead.
my %ev;
for my $t (@refused) {
    my($site) = @$t;
    my $id = "$site-$u";
    $ev{$site} = { id => $id, seen => [] };
    my $res = request($site, POST => '/proxy/member', json => { id => $id });
    $ev{$site}{code} = $res->code;
}
is_deeply([map { $ev{$_->[0]}{code} } @refused], [map { 201 } @refused],
          'the admin requests to the refusing sites were answered');
# watch the outbox until every event is dead (or 30s)
wait_for(sub {
    my $done = 1;
    for my $t (@refused) {
        my $e = $ev{$t->[0]};
        my $row = row_of($e->{id}) or next;
        push @{ $e->{seen} }, "$row->{state}/$row->{attempts}";
        $e->{row} = $row;
        $done = 0 unless $row->{state} == 2;
    }
    return $done;
}, 30);
for my $t (@refused) {
    my($site, $r, $err, $hs) = @$t;
    my $e = $ev{$site};
    my $row = $e->{row} || {};
    my %seen = map { $_ => 1 } @{ $e->{seen} };
    ok((grep { m{^0/[23]$} } keys %seen),
       "$site: pending between attempts (retried)") or diag("seen: @{ $e->{seen} }");
    ok(!(grep { m{^[^0]/[0-3]$} } keys %seen),
       "$site: not dead (nor delivered) before the schedule ended") or diag("seen: @{ $e->{seen} }");
    is_deeply([$row->{state}, $row->{attempts}, $row->{last_status}], [2, 4, 0],
              "$site: dead after the four attempts, no HTTP status") or diag(explain $row);
    like($row->{last_error} // '', $err, "$site: the TLS error is kept")
        or diag($row->{last_error});
    is(scalar calls_for_id($e->{id}, $rcv{$r}{log}), 0, "$site: the receiver got no call");
    my @h = handshakes($rcv{$r}{log});
    ok((grep { ($_->{detail} // '') =~ $hs || ($_->{error} // '') =~ $hs } @h),
       "$site: the receiver saw the handshake fail") or diag(explain \@h);
}

# -- verification off ----------------------------------------------------------------------
{
    my $site = 'et_sec_tls_noverify';
    my $id = "$site-$u";
    request($site, PUT => "/proxy/member/$id", json => { n => 1 });
    my $calls = wait_calls($id, log => $rcv{unknown}{log});
    is(scalar @$calls, 1, "$site: EventTriggerTLSVerify off delivers to the unknown CA's receiver");
    my($rc, $out) = configtest(join "\n",
        '<VirtualHost 127.0.0.1:8443>', 'ServerName noverify.example',
        'EventTriggerEndpoint https://hooks.example/cb', 'EventTriggerTLSVerify off',
        '</VirtualHost>');
    ok($rc == 0 && $out =~ /ET00013: \S+httpd\.conf:\d+: EventTriggerTLSVerify off: site noverify\.example:8443 /,
       "EventTriggerTLSVerify off: httpd warns at startup (ET00013, with file and line)")
        or diag("exit $rc: $out");
    my $after = status_json();
    cmp_ok(($after->{dead} // 0) - ($status_before->{dead} // 0), '>=', scalar @refused,
           'the status page counts the refused events as dead');
}
