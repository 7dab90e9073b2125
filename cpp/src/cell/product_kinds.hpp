// The kinds of the training passes' products (training_products.hpp), by the plan's name for them
// (TrainingProduct): the one place a pass learns which kind it runs on.
#pragma once

#include <type_traits>

#include "cell/training_products.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// Runs body(kind) with an object of the kind of products `product` names: Unpacked<T>, Panels<T> or
// Bf16Dot<T> (float only: the plan never names it for double).
template <typename T, typename Body>
void with_products(TrainingProduct product, const Body& body) {
  switch (product) {
    case TrainingProduct::unpacked: return body(Unpacked<T>{});
    case TrainingProduct::panels: return body(Panels<T>{});
    case TrainingProduct::bf16_dot:
      if constexpr (std::is_same_v<T, float>) return body(Bf16Dot<T>{});
      break;
  }
  throw Error("internal: no products of this kind for this element type");
}

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
