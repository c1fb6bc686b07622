#!/usr/bin/perl
# A tiny HTTP server for the import tests (the base image has perl, not curl or python):
# 200 on / and /health, 404 elsewhere.
use strict;
use warnings;
use IO::Socket::INET;

my $port = $ENV{PORT} || 8080;
my $server = IO::Socket::INET->new(LocalPort => $port, Listen => 16, ReuseAddr => 1) or die "listen on $port: $!";
$| = 1;
print "listening on $port\n";
while (my $client = $server->accept) {
    my $request = <$client> // '';
    while (my $header = <$client>) {
        last if $header =~ /^\r?\n$/;
    }
    my ($path) = $request =~ m{^\S+\s+(\S+)};
    my $ok = defined $path && ($path eq '/' || $path eq '/health');
    my $body = $ok ? "ok " . ($ENV{GREETING} // '') . "\n" : "not found\n";
    print $client ($ok ? "HTTP/1.1 200 OK" : "HTTP/1.1 404 Not Found"), "\r\nContent-Length: ", length($body),
        "\r\nConnection: close\r\n\r\n", $body;
    close $client;
}
