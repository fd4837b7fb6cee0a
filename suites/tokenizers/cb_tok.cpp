// cb_tok: cb_tokenizer on the command line, for the conformance ctests that compare it with
// spm_encode / spm_decode, the sentencepiece Python binding and bpe_reference.py. Links
// cb_tokenizer alone (which also shows the library stands without the engine).
//
//   cb_tok TOKENIZER encode [lines|whole] < text     ids, space-separated, a line per text
//   cb_tok TOKENIZER decode < ids                    the text of each line of ids
//   cb_tok TOKENIZER stream < ids                    as decode, through StreamingDecoder
//   cb_tok TOKENIZER describe
// TOKENIZER: a tokenizer.json / *.model file, or a model folder (load_tokenizer).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "cb/engine/tokenizer/tokenizer.h"

namespace tok = cb::engine::tok;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: cb_tok TOKENIZER encode [lines|whole] | decode | stream | describe\n";
    return 2;
  }
  try {
    const std::filesystem::path p = argv[1];
    auto t = std::filesystem::is_directory(p) ? tok::load_tokenizer(p) : tok::load_tokenizer_file(p);
    const std::string mode = argv[2];
    if (mode == "describe") {
      std::cout << t->describe().dump(1) << "\n";
      return 0;
    }
    std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::vector<std::string> texts;
    if (mode == "encode" && argc > 3 && std::string(argv[3]) == "whole") {
      texts.push_back(data);
    } else {
      size_t pos = 0;
      while (pos < data.size()) {
        size_t nl = data.find('\n', pos);
        if (nl == std::string::npos) nl = data.size();
        texts.push_back(data.substr(pos, nl - pos));
        pos = nl + 1;
      }
    }
    std::string out;
    for (const std::string& line : texts) {
      if (mode == "encode") {
        const auto ids = t->encode(line, false);
        for (size_t i = 0; i < ids.size(); ++i) {
          if (i) out += ' ';
          out += std::to_string(ids[i]);
        }
      } else if (mode == "decode" || mode == "stream") {
        std::vector<int32_t> ids;
        std::istringstream in(line);
        for (long v; in >> v;) ids.push_back(int32_t(v));
        if (mode == "decode") {
          out += t->decode(ids);
        } else {
          tok::StreamingDecoder d(*t);
          for (int32_t id : ids) out += d.push(id);
          out += d.finish();
        }
      } else {
        std::cerr << "cb_tok: unknown mode '" << mode << "'\n";
        return 2;
      }
      out += '\n';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "cb_tok: error: " << e.what() << "\n";
    return 1;
  }
}
